"""The rare-class curve (issue 14 item 5): rare-class recall and balanced accuracy on the real test split
against the number of real rare training images (``data.rare.keep``), one line per arm:

* ``real only``                        -- ``rare.real_only`` of ``metrics/evaluate.json`` (arm ``trtr``);
* ``oversampling``                     -- ``rare.oversampling`` (``trtr_balanced``);
* ``oversampling + raw synthetic``     -- ``rare.raw_synthetic`` (``trs_balanced_raw``: the rare classes'
  generated images before curation and the plan; only when the run set ``evaluate.raw_cohort``);
* ``oversampling + boost plan``        -- ``rare.boost_plan`` (``trs_balanced_rare``: the rare classes' images of
  what ships, ``data/audited``; equal to oversampling where the plan shipped none).

Both synthetic arms add the rare classes' synthetic images only: the common classes' ordinary synthetic images
change the classifier too (``rare.synthetic``, the whole shipped cohort, is in evaluate.json but not drawn).

Error bars: the std over classifier seeds (``utility.<arm>`` of the same file) where one rare class is
reported. Experiments come from ``dvc exp show --json`` (run here, or a saved file with ``--exp-show``) or from
``KEEP=path/to/evaluate.json`` pairs (``--metrics``); experiments of the same source and keep are averaged,
failed or queued ones are skipped. One row of panels per data source (``data.path`` file name).

    dvc exp show --json > exps.json
    python -m synthgen.reports.boost_curves --exp-show exps.json --out reports/boost_curves.png
    python -m synthgen.reports.boost_curves --metrics 10=a/evaluate.json 40=b/evaluate.json --out x.png

Also writes the points as JSON next to the PNG (``<out>.json``), in a fixed order (same input, same bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..io import atomic_path, write_json

#: (label in the plot, key under ``rare`` in evaluate.json, utility arm for the error bars)
ARMS = (("real only", "real_only", "trtr"), ("oversampling", "oversampling", "trtr_balanced"),
        ("oversampling + raw synthetic", "raw_synthetic", "trs_balanced_raw"),
        ("oversampling + boost plan", "boost_plan", "trs_balanced_rare"))
#: Where the plan ships nothing its curve is the oversampling curve: a wide line under a dashed one keeps both
#: visible.
_STYLE = {"oversampling": {"marker": "o", "linewidth": 5, "markersize": 10, "alpha": 0.45},
          "oversampling + boost plan": {"marker": "s", "linestyle": "--", "fillstyle": "none"}}
METRICS = (("rare_recall", "rare-class recall"), ("balanced_accuracy", "balanced accuracy"))
EVALUATE_JSON = "metrics/evaluate.json"


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every experiment state (``{"rev", "name", "data", "error", "experiments"}``) of ``dvc exp show --json``."""
    if isinstance(node, list):
        for x in node:
            yield from _walk(x)
    elif isinstance(node, Mapping):
        if "rev" in node and "data" in node:
            yield node
        for rng in node.get("experiments") or []:
            yield from _walk(rng.get("revs") or [])


def _get(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


def points_from_exp_show(exps: Any, evaluate_json: str = EVALUATE_JSON) -> list[dict[str, Any]]:
    """``[{"source", "keep", "evaluate", "exp"}]`` for every finished experiment with a rare-class cut."""
    out = []
    for st in _walk(exps):
        data = st.get("data") or {}
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        metrics = ((data.get("metrics") or {}).get(evaluate_json) or {}).get("data")
        keep = _get(params, "data.rare.keep")
        if st.get("error") or not isinstance(metrics, Mapping) or "rare" not in metrics or keep is None:
            continue
        source = Path(str(_get(params, "data.path") or _get(params, "data.name") or "data")).stem
        out.append({"source": source, "keep": int(keep), "evaluate": metrics,
                    "exp": st.get("name") or str(st.get("rev"))[:7]})
    return out


def points_from_metrics(pairs: Sequence[str]) -> list[dict[str, Any]]:
    """``KEEP=path`` pairs (optionally ``SOURCE:KEEP=path``) -> points."""
    out = []
    for pair in pairs:
        head, sep, path = pair.partition("=")
        source, _, keep = head.rpartition(":")
        if not sep or not keep.isdigit():
            raise InputError(pair, "expected KEEP=path/to/evaluate.json (or SOURCE:KEEP=path)")
        try:
            metrics = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise InputError(path, f"cannot read the evaluate metrics ({e})") from None
        if "rare" not in metrics:
            raise InputError(path, "no `rare` section: evaluate ran without data.rare / evaluate.rare_classes")
        out.append({"source": source or "data", "keep": int(keep), "evaluate": metrics, "exp": path})
    return out


def curves(points: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, list]]]:
    """``{source: {arm label: {"keep": [...], metric: [...], metric_std: [...]}}}``, keeps ascending, runs
    of the same source and keep averaged (std: mean of the runs' seed stds; None where unknown)."""
    grouped: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for p in points:
        grouped[(p["source"], p["keep"])].append(p["evaluate"])
    out: dict[str, dict[str, dict[str, list]]] = {}
    for (source, keep) in sorted(grouped):
        runs = grouped[(source, keep)]
        for label, key, arm in ARMS:
            vals = [r["rare"][key] for r in runs if isinstance(r["rare"].get(key), Mapping)]
            if not vals:
                continue
            row = out.setdefault(source, {}).setdefault(label, {"keep": []})
            row["keep"].append(keep)
            for m, _ in METRICS:
                row.setdefault(m, []).append(float(np.mean([v[m] for v in vals])))
                row.setdefault(f"{m}_std", []).append(_std(runs, arm, m))
    return out


def _std(runs: Sequence[Mapping[str, Any]], arm: str, metric: str) -> float | None:
    stds = []
    for r in runs:
        classes = r["rare"].get("classes") or []
        u = _get(r, f"utility.{arm}")
        if not isinstance(u, Mapping) or len(classes) != 1:
            return None
        s = _get(u, "balanced_accuracy.std") if metric == "balanced_accuracy" else \
            (u.get("recall") or {}).get(classes[0], {}).get("std")
        if s is None:
            return None
        stds.append(float(s))
    return float(np.mean(stds))


def draw(data: Mapping[str, Mapping[str, Mapping[str, list]]], path: str | os.PathLike) -> None:
    """One row per source: rare-class recall and balanced accuracy against real rare images (log x)."""
    from ..metrics.plots import _PNG_META, _plt

    plt = _plt()
    sources = list(data)
    fig, axes = plt.subplots(max(1, len(sources)), 2, figsize=(10, 3.8 * max(1, len(sources))), dpi=100,
                             squeeze=False)
    for row, source in zip(axes, sources):
        for ax, (m, title) in zip(row, METRICS):
            for label, _, _ in ARMS:
                c = data[source].get(label)
                if not c:
                    continue
                err = None if any(s is None for s in c[f"{m}_std"]) else c[f"{m}_std"]
                ax.errorbar(c["keep"], c[m], yerr=err, capsize=3, label=label, **_STYLE.get(label, {"marker": "o"}))
            ax.set_xscale("log")
            keeps = sorted({k for c in data[source].values() for k in c["keep"]})
            ax.set_xticks(keeps, [str(k) for k in keeps])
            ax.minorticks_off()
            ax.set_xlabel("real training images of the rare class (data.rare.keep)")
            ax.set_ylabel(f"{title} on real test")
            ax.set_title(f"{source}: {title}")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=_PNG_META)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m synthgen.reports.boost_curves",
                                 description="Rare-class recall and balanced accuracy vs real rare images.")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--exp-show", type=Path, help="saved `dvc exp show --json` output (default: run it here)")
    src.add_argument("--metrics", nargs="+", metavar="[SOURCE:]KEEP=PATH", help="evaluate.json files instead")
    ap.add_argument("--evaluate-json", default=EVALUATE_JSON, help="metrics file path inside each experiment")
    ap.add_argument("--out", type=Path, default=Path("reports/boost_curves.png"))
    a = ap.parse_args(argv)
    try:
        if a.metrics:
            points = points_from_metrics(a.metrics)
        else:
            if a.exp_show:
                text = a.exp_show.read_text()
            else:
                r = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
                if r.returncode:
                    raise InputError("dvc exp show --json", (r.stderr.strip().splitlines() or ["failed"])[-1])
                text = r.stdout
            try:
                points = points_from_exp_show(json.loads(text), a.evaluate_json)
            except ValueError as e:
                raise InputError(a.exp_show or "dvc exp show --json", f"not valid JSON ({e})") from None
        if not points:
            raise InputError(a.exp_show or "dvc exp show --json", "no finished experiment with data.rare.keep "
                             "and a `rare` section in " + a.evaluate_json)
        data = curves(points)
        draw(data, a.out)
        write_json(a.out.with_suffix(".json"), {"points": data, "experiments": sorted(
            f"{p['source']}:{p['keep']}:{p['exp']}" for p in points)})
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out} ({len(points)} experiments); view it with DVC: dvc plots show {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
