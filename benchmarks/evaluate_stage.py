"""Benchmark the evaluate stage on real MedMNIST data with a degraded-real "synthetic" cohort.

Prepares the dataset into ``benchmarks/_work/<name>/prepared``, builds a class-balanced cohort of
``--n`` images drawn with replacement from the real *val* split plus Gaussian noise (std ``--noise``)
(a stand-in until generators exist), runs ``pipelines/evaluate.py`` with the default budget and
reports its wall time next to the headline numbers (TRTR accuracy, FD and its real-vs-real floor).

    nice -n 5 python benchmarks/evaluate_stage.py --data ../shared/data/bloodmnist.npz
    nice -n 5 python benchmarks/evaluate_stage.py --data ../shared/data/pneumoniamnist_imbalanced.npz \
        --set evaluate.rare_classes=[normal]
    nice -n 5 python benchmarks/evaluate_stage.py --data ../shared/data/bloodmnist.npz \
        --data-set data.rare.classes=[basophil] --data-set data.rare.keep=40
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthgen.config import compose  # noqa: E402
from synthgen.stages.prepare import prepare  # noqa: E402
from synthgen.data.prepared import load_split  # noqa: E402
from synthgen.io import save_npz, write_json  # noqa: E402


def degraded_cohort(prepared: Path, out: Path, n: int, noise: float, seed: int) -> None:
    val = load_split(prepared, "val", as_float=False)
    rng = np.random.default_rng(seed)
    classes = np.unique(val.labels)
    per = np.full(len(classes), n // len(classes))
    per[: n - per.sum()] += 1
    idx = np.concatenate([rng.choice(np.flatnonzero(val.labels == c), k, replace=True) for c, k in zip(classes, per)])
    top = np.iinfo(val.images.dtype).max
    x = val.images[idx].astype(np.float32) + rng.normal(0, noise * top, size=(len(idx),) + val.images.shape[1:])
    images = np.clip(np.rint(x), 0, top).astype(val.images.dtype)
    save_npz(out / "cohort.npz", images=images, labels=val.labels[idx], seeds=np.arange(len(idx), dtype=np.int64))
    meta = json.loads((prepared / "meta.json").read_text())
    write_json(out / "cohort.json", {"class_names": meta["class_names"], "generator": "degraded-real (benchmark)"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--noise", type=float, default=0.02)
    ap.add_argument("--data-set", action="append", default=[], help="data.* override for prepare")
    ap.add_argument("--set", action="append", default=[], help="extra override for the evaluate stage")
    args = ap.parse_args()
    name = Path(args.data).stem + ("-" + "-".join(s.split("=")[-1] for s in args.data_set) if args.data_set else "")
    work = REPO / "benchmarks" / "_work" / name.replace("[", "").replace("]", "")
    data = ["data=medmnist", f"data.path={Path(args.data).resolve()}", *args.data_set]
    prepared = work / "prepared"
    if not (prepared / "meta.json").exists():
        prepare(compose(data), prepared)
    degraded_cohort(prepared, work / "generated", args.n, args.noise, seed=0)
    overrides = [*data, f"paths.prepared={prepared}", f"paths.generated={work / 'generated'}",
                 f"paths.metrics={work / 'metrics'}", f"paths.reports={work / 'reports'}",
                 f"evaluate.cache_dir={work / 'cache'}", *args.set]
    t = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, str(REPO / "pipelines" / "evaluate.py"), *overrides], check=True, cwd=REPO,
                   env=env)
    wall = time.perf_counter() - t
    m = json.loads((work / "metrics" / "evaluate.json").read_text())
    u = m["utility"]
    print(json.dumps({
        "wall_s": round(wall, 1), "n_synthetic": m["n"]["synthetic"],
        "trtr_accuracy": u["trtr"]["accuracy"], "trtr_balanced_accuracy": u["trtr"]["balanced_accuracy"],
        "tstr_accuracy": u.get("tstr", {}).get("accuracy"),
        "fd": m["fidelity"]["fd"], "fd_floor": m["fidelity"]["fd_floor"], "kid": m["fidelity"]["kid"],
        "kid_floor": m["fidelity"]["kid_floor"], "rare": m.get("rare"),
    }, indent=1))


if __name__ == "__main__":
    main()
