"""The ceiling for any generator on a ``data.rare`` cut: a cohort of the *real* images the cut removed.

The rare-class targets of docs/boost.md ask synthetic images of a class to beat oversampling its few real images
on the test split. A generator imitates the real class, so the real images that the ``data.rare`` cut removed
from the training split (``train_uncut`` minus ``train``; never val or test images) are the best "synthetic"
images one can hope for. This script writes them as a cohort the evaluate stage reads
(``cohort.npz``: ``images`` in the prepared dtype, ``labels``; ``cohort.json``: ``class_names``, ``source``), so
that its raw arm (``trs_balanced_raw``: oversampling + these images of the rare class, same share and seeds as
for a generator's candidates) measures what extra real images of the class would give:

    python benchmarks/real_positive_cohort.py --prepared RUN/data/prepared --class basophil --out RUN/realpos
    python pipelines/evaluate.py ... evaluate.raw_cohort=RUN/realpos/cohort.npz

``--max N`` keeps a seeded sample of N of them (``--seed``), e.g. the generator's candidate count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from synthgen.curation.plan_validation import image_hashes
from synthgen.data.prepared import load_meta, load_split
from synthgen.io import write_json


def removed_by_cut(prepared: Path, cls: int) -> np.ndarray:
    """Images ``(M, C, H, W)`` (prepared dtype) of class ``cls`` in ``train_uncut`` that are not in ``train``:
    the real images the ``data.rare`` cut removed, in ``train_uncut`` order."""
    if not (prepared / "train_uncut.npz").is_file():
        raise SystemExit(f"error: {prepared / 'train_uncut.npz'}: missing; prepare with data.rare.keep set")
    train = load_split(prepared, "train", as_float=False)
    uncut = load_split(prepared, "train_uncut", as_float=False)
    kept = set(image_hashes(train.images[train.labels == cls]))
    rows = uncut.images[uncut.labels == cls]
    return rows[np.array([h not in kept for h in image_hashes(rows)], dtype=bool)]


def write_positive_cohort(prepared: Path, cls_name: str, out: Path, max_images: int | None = None,
                          seed: int = 0) -> int:
    """Write ``out/cohort.npz`` and ``out/cohort.json`` (see the module docstring); return the image count."""
    names = list(load_meta(prepared)["class_names"])
    if cls_name not in names:
        raise SystemExit(f"error: --class {cls_name!r} is not a class of {prepared}; classes: {names}")
    cls = names.index(cls_name)
    x = removed_by_cut(prepared, cls)
    if len(x) == 0:
        raise SystemExit(f"error: {prepared}: the cut removed no {cls_name} image")
    if max_images is not None and max_images < len(x):
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_images, replace=False))]
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "cohort.tmp.npz"
    np.savez(tmp, images=x, labels=np.full(len(x), cls, dtype=np.int64))
    tmp.replace(out / "cohort.npz")
    write_json(out / "cohort.json", {
        "class_names": names, "source": f"real {cls_name} training images removed by the data.rare cut "
        "(positive control, not synthetic)", "n": int(len(x)), "max_images": max_images, "seed": seed})
    return int(len(x))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prepared", type=Path, required=True)
    ap.add_argument("--class", dest="cls", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--max", dest="max_images", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    n = write_positive_cohort(a.prepared, a.cls, a.out, a.max_images, a.seed)
    print(f"{a.out / 'cohort.npz'}: {n} real {a.cls} images the cut removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
