"""Calibration of the curate stage's filter thresholds on REAL held-out images (issue 14).

For a prepared dataset, the domain classifier of the evaluate stage (trained on the real training split only;
the same cache as the stages) scores the real VALIDATION images exactly as the curate stage scores synthetic
ones: confidence in their true class, realism against the training images of their class, and pixel Pearson
with the nearest other val image of the class. A threshold's calibration is the share of real val images
that pass it (a filter that drops many real images drops good synthetic ones too). With ``--cohort`` the same
table is printed for a synthetic cohort (what the stage would drop).

    python benchmarks/curate_calibration.py --prepared data/prepared [--cohort data/generated] \
        [--cache .cache/evaluate] [--steps 600] [-o overrides ...]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from synthgen.config import compose
from synthgen.curation.filter import greedy_near_duplicates
from synthgen.curation.scores import classifier_scores
from synthgen.data.prepared import load_meta, load_split
from synthgen.data.symmetries import parse_symmetries
from synthgen.metrics.classifier import Recipe
from synthgen.metrics.features import load_or_train
from synthgen.metrics.synthetic import load_cohort

CONF = (0.05, 0.1, 0.2, 0.3, 0.5)
REAL = (1.0, 1.25, 1.5, 2.0, 3.0)
DUP = (0.9, 0.95, 0.98, 0.99, 0.995)


def table(conf: np.ndarray, real: np.ndarray, nn: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    rows = {}
    for c, name in [(-1, "all"), *enumerate(names)]:
        m = np.ones(len(labels), bool) if c < 0 else labels == c
        if not m.any():
            continue
        rows[name] = {"n": int(m.sum()),
                      "confidence>=": {t: round(float((conf[m] >= t).mean()), 3) for t in CONF},
                      "realism<=": {t: round(float((real[m] <= t).mean()), 3) for t in REAL},
                      "nn_pearson<": {t: round(float((nn[m] < t).mean()), 3) for t in DUP},
                      "median": {"confidence": round(float(np.median(conf[m])), 3),
                                 "realism": round(float(np.median(real[m])), 3),
                                 "nn_pearson": round(float(np.median(nn[m])), 4)}}
    return rows


def nn_pearson(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.full(len(labels), -1.0, np.float32)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        _, nn = greedy_near_duplicates(images[rows], np.arange(len(rows)), None)
        out[rows] = nn
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prepared", required=True)
    ap.add_argument("--cohort", default=None)
    ap.add_argument("--cache", default=".cache/evaluate")
    ap.add_argument("--steps", type=int, default=None, help="extractor steps (default: evaluate.features.steps)")
    ap.add_argument("-o", "--overrides", nargs="*", default=[])
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = compose(a.overrides)
    meta = load_meta(a.prepared)
    names = list(meta["class_names"])
    sym = parse_symmetries(cfg.data.symmetries)
    steps = a.steps or int(cfg.evaluate.features.steps)
    recipe = Recipe.from_config(cfg.evaluate.classifier, symmetries=sym, steps=steps)
    t0 = time.perf_counter()
    train = load_split(a.prepared, "train", as_float=False)
    ext = load_or_train(train.images, train.labels, len(names), recipe, int(cfg.evaluate.features.seed),
                        bool(cfg.evaluate.features.balanced), a.cache)
    t1 = time.perf_counter()
    tr = torch.from_numpy(train.images.astype(np.float32) / np.iinfo(train.images.dtype).max)
    real_f = ext(tr)
    k = int(cfg.curate.filter.realism_k)
    out = {"extractor_s": round(t1 - t0, 1), "steps": steps, "symmetries": list(sym)}
    val = load_split(a.prepared, "val")
    s = classifier_scores(ext, torch.from_numpy(val.images), val.labels, real_f, train.labels, k, recipe.bf16)
    out["real_val"] = table(s.confidence, s.realism, nn_pearson(val.images, val.labels), val.labels, names)
    if a.cohort:
        x, y, _ = load_cohort(a.cohort + "/cohort.npz" if not a.cohort.endswith(".npz") else a.cohort, meta)
        s = classifier_scores(ext, torch.from_numpy(x), y, real_f, train.labels, k, recipe.bf16)
        out["synthetic"] = table(s.confidence, s.realism, nn_pearson(x, y), y, names)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
