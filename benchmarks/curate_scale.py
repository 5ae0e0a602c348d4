"""Wall time of the curate stage on a BloodMNIST-size cohort (issue 14 cost target).

The cohort stands in for a generated one: the prepared TEST split's real images (never seen by the domain
classifier) plus copies shifted by one pixel (np.roll) until ``--n`` samples, labelled with their true class,
half of one class marked as boost candidates at guidance 2.0 (plan off: they all ship when kept). Prints the
stage's timings and kept fractions per class; the shifted copies exercise the near-duplicate pass.

    python benchmarks/curate_scale.py --prepared /tmp/cal/blood/prepared --n 12000 --work /tmp/curate_scale \
        -o data=medmnist data.path=/abs/bloodmnist.npz 'data.symmetries=[hflip,vflip,rot90]' budget=standard
"""

from __future__ import annotations

import argparse
import logging
import json
import time
from pathlib import Path

import numpy as np

from synthgen.config import compose
from synthgen.data.prepared import load_meta, load_split
from synthgen.io import save_npz, write_json
from synthgen.stages.curate import curate

SHIFTS = ((0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, -1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prepared", required=True)
    ap.add_argument("--n", type=int, default=12000)
    ap.add_argument("--work", required=True)
    ap.add_argument("--cache", default=".cache/evaluate")
    ap.add_argument("-o", "--overrides", nargs="*", default=[])
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    work = Path(a.work)
    test = load_split(a.prepared, "test", as_float=False)
    parts, labels = [], []
    for dy, dx in SHIFTS:
        parts.append(np.roll(test.images, (dy, dx), axis=(2, 3)))
        labels.append(test.labels)
    images, labels = np.concatenate(parts)[:a.n], np.concatenate(labels)[:a.n]
    n = len(labels)
    cand = (labels == 0) & (np.arange(n) % 2 == 0)
    order = np.r_[np.flatnonzero(~cand), np.flatnonzero(cand)]  # candidates after the ordinary rows
    images, labels, cand = images[order], labels[order], cand[order]
    save_npz(work / "generated" / "cohort.npz", images=images, labels=labels, seeds=np.arange(n, dtype=np.int64),
             guidance=np.where(cand, 2.0, 1.0).astype(np.float32), boost_candidate=cand)
    names = load_meta(a.prepared)["class_names"]
    write_json(work / "generated" / "cohort.json", {"generator": "real test images", "class_names": names})
    cfg = compose(list(a.overrides) + [f"paths.prepared={a.prepared}", f"paths.generated={work / 'generated'}",
                                       f"paths.curated={work / 'curated'}", f"paths.metrics={work / 'metrics'}",
                                       f"evaluate.cache_dir={a.cache}", f"curate.classes=[{names[0]}]",
                                       "curate.plan.enabled=false"])
    t0 = time.perf_counter()
    summary = curate(cfg)
    wall = time.perf_counter() - t0
    print(json.dumps({"n": n, "wall_s": round(wall, 1), "dropped": summary["dropped"],
                      "kept_fraction": {c: round(v["kept"] / max(1, v["in"]), 3) for c, v in summary["per_class"].items()}},
                     indent=1))


if __name__ == "__main__":
    main()
