"""Export throughput and ``synthgen verify`` wall time (the ``export`` case of ``benchmarks/run.py``).

    python benchmarks/export_throughput.py [--quick]

Prints MB/s of synthgen's shard writing next to a plain ``tarfile`` writing the same bytes in the same run
(target: >= 50%), PNG encoder timings, and verify wall time on a 10k-sample export.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cases import export as case  # noqa: E402
from benchmarks.harness import Context, add_ratios, rows_to_markdown  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2k samples, one repeat")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="synthgen-export-bench-") as work:
        shared = os.environ.get("SYNTHGEN_SHARED_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
        if not Path(shared).exists():
            shared = str(Path(__file__).resolve().parents[3] / "shared" / "data")  # from a worktree
        rows = add_ratios(case.run(Context(quick=args.quick, device="cpu", workdir=work, shared_data=shared)))
    print(rows_to_markdown(rows))
    for r in rows:
        if r.note:
            print(f"- {r.variant}: {r.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
