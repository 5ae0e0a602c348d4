"""A CT-like stress cohort built from real X-rays: lateralized classes, near-duplicate "slices", a shifted test.

synthgen was developed on BloodMNIST and PneumoniaMNIST, whose images are independent and whose splits are
exchangeable. A CT cohort broke it in three ways this file reproduces on data we ship nothing of:

* **laterality**: each "scan" is a real PneumoniaMNIST X-ray, stored either as is or mirrored left-right, and
  the mirror is its own class (``normal`` vs ``normal_mirrored``, ...): a classifier trained with random flips
  cannot tell them apart;
* **adjacent slices**: every scan becomes ``--slices`` images that drift slowly (a sub-pixel shift and a 1%
  zoom per slice, plus noise), so neighbouring images of one scan are near-duplicates, like adjacent CT slices;
* **shifted test split**: the test scans come from the source's test split with a gamma and contrast change
  (another scanner), so test is not exchangeable with train and val.

Splits are scan-disjoint, as in MedMNIST's CT sets, and the file has MedMNIST's layout and no patient ids::

    python benchmarks/stress_cohort.py --out /tmp/stress.npz
    python pipelines/prepare.py data=medmnist data.path=/tmp/stress.npz \
        'data.classes=[normal,normal_mirrored,pneumonia,pneumonia_mirrored]'

The recipe that runs the whole pipeline on it and what it measured: docs/privacy.md ("stress cohort").
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SYNTHGEN_SHARED_DATA", REPO.parent / "shared" / "data"))
CLASSES = ("normal", "normal_mirrored", "pneumonia", "pneumonia_mirrored")


def slices_of(base: np.ndarray, n_slices: int, rng: np.random.Generator) -> np.ndarray:
    """``(H, W)`` uint8 -> ``(n_slices, H, W)`` uint8: slice ``j`` is the image shifted by ``j * d`` pixels
    (``|d| <= 0.35``) and zoomed by ``1 + 0.01 j`` (bilinear, border padding), plus Gaussian noise of 1.5%."""
    d = rng.uniform(-0.35, 0.35, size=2)
    h, w = base.shape
    x = torch.from_numpy(base.astype(np.float32) / 255.0)[None, None].expand(n_slices, 1, h, w)
    j = torch.arange(n_slices, dtype=torch.float32)
    theta = torch.zeros(n_slices, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / (1.0 + 0.01 * j)
    theta[:, 0, 2] = j * float(d[0]) * 2.0 / w
    theta[:, 1, 2] = j * float(d[1]) * 2.0 / h
    grid = F.affine_grid(theta, [n_slices, 1, h, w], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0].numpy()
    out = out + rng.normal(0.0, 0.015, out.shape)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def build(source: np.lib.npyio.NpzFile, scans: dict[str, int], n_slices: int, gamma: float, contrast: float,
          seed: int) -> dict[str, np.ndarray]:
    """MedMNIST-layout arrays: train/val scans from the source's train split, test scans from its test split
    (shifted); each scan mirrored with probability 1/2; label = 2 * source label + mirrored."""
    rng = np.random.default_rng(seed)
    train_pool = rng.permutation(len(source["train_images"]))
    pools = {"train": train_pool[:scans["train"]],
             "val": train_pool[scans["train"]:scans["train"] + scans["val"]],
             "test": rng.permutation(len(source["test_images"]))[:scans["test"]]}
    out = {}
    for split, idx in pools.items():
        src = "test" if split == "test" else "train"
        images, labels = [], []
        for i in idx:
            base = source[f"{src}_images"][i]
            mirrored = int(rng.random() < 0.5)
            if mirrored:
                base = base[:, ::-1]
            stack = slices_of(np.ascontiguousarray(base), n_slices, rng)
            if split == "test":  # another scanner: gamma and contrast
                s = (stack.astype(np.float64) / 255.0) ** gamma
                s = 0.5 + contrast * (s - 0.5)
                stack = np.clip(np.rint(s * 255.0), 0, 255).astype(np.uint8)
            images.append(stack)
            labels += [2 * int(np.ravel(source[f"{src}_labels"][i])[0]) + mirrored] * n_slices
        out[f"{split}_images"] = np.concatenate(images)
        out[f"{split}_labels"] = np.asarray(labels, np.int64)[:, None]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=str(SHARED / "pneumoniamnist_imbalanced.npz"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-scans", type=int, default=800)
    ap.add_argument("--val-scans", type=int, default=150)
    ap.add_argument("--test-scans", type=int, default=200)
    ap.add_argument("--slices", type=int, default=6)
    ap.add_argument("--gamma", type=float, default=1.3)
    ap.add_argument("--contrast", type=float, default=0.85)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    arrays = build(np.load(a.source), {"train": a.train_scans, "val": a.val_scans, "test": a.test_scans},
                   a.slices, a.gamma, a.contrast, a.seed)
    np.savez_compressed(a.out, **arrays)
    for s in ("train", "val", "test"):
        counts = np.bincount(arrays[f"{s}_labels"][:, 0], minlength=len(CLASSES))
        print(f"{s}: {len(arrays[f'{s}_images'])} images, per class {dict(zip(CLASSES, counts.tolist()))}")
    print(f"wrote {a.out}; classes (label order): {list(CLASSES)}")


if __name__ == "__main__":
    main()
