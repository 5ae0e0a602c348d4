"""Run every benchmark case and write benchmarks/results.{md,json}.

    python benchmarks/run.py [--quick] [--device cpu|cuda] [--cases unet,privacy_knn,...]

Each figure is a ratio to a reference measured in the same run on the same machine (see harness.py).
Benchmarks never run as part of the test suite.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.harness import Context, add_ratios, as_dict, machine, rows_to_markdown  # noqa: E402

CASES = ["ingest", "unet", "sampling", "gan", "privacy_knn", "export", "pipeline"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (minutes)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--checkpoint", default=os.environ.get("SYNTHGEN_BENCH_DDPM_CKPT"),
                    help="diffusion generator.ckpt for the sampling case (default: $SYNTHGEN_BENCH_DDPM_CKPT; "
                         "none: a small model is trained in the run)")
    args = ap.parse_args(argv)
    shared = os.environ.get("SYNTHGEN_SHARED_DATA") or next(  # ../shared/data of a clone or of a worktree
        (str(p) for p in (HERE.parents[1] / "shared" / "data", HERE.parents[2] / "shared" / "data") if p.exists()),
        str(HERE.parents[1] / "shared" / "data"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    all_rows, failures, timings = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="synthgen-bench-") as work:
        ctx = Context(quick=args.quick, device=args.device, workdir=work, shared_data=shared,
                      checkpoint=args.checkpoint)
        for name in [c for c in args.cases.split(",") if c]:
            t0 = time.perf_counter()
            print(f"== {name}", flush=True)
            try:
                mod = importlib.import_module(f"benchmarks.cases.{name}")
                rows = mod.run(ctx)
                all_rows += rows
                for r in rows:
                    print(f"   {r.variant:>28s} {r.metric:>24s} {r.value:10.4g} {r.unit}", flush=True)
            except Exception:  # noqa: BLE001 - a failing case is reported, the others still run
                failures[name] = traceback.format_exc()
                print(failures[name], file=sys.stderr)
            timings[name] = time.perf_counter() - t0
    add_ratios(all_rows)
    info = machine()
    payload = {"machine": info, "quick": args.quick, "device": args.device, "checkpoint": args.checkpoint,
               "rows": [as_dict(r) for r in all_rows], "failures": failures, "case_seconds": timings}
    (out / f"results{suffix}.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    md = [f"# synthgen benchmarks ({args.device}{', quick' if args.quick else ''})", "",
          "Machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), "",
          f"Diffusion checkpoint: {args.checkpoint or 'none (small model trained in the run)'}", "", rows_to_markdown(all_rows), ""]
    notes = [f"- {r.case}/{r.variant}: {r.note}" for r in all_rows if r.note]
    if notes:
        md += ["Notes:", *notes, ""]
    if failures:
        md += ["Failed cases: " + ", ".join(failures), ""]
    (out / f"results{suffix}.md").write_text("\n".join(md))
    print(f"wrote {out / f'results{suffix}.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
