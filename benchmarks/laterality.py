"""Can the evaluate classifier learn laterality? Old default augmentation (random h+v flips) vs data.symmetries.

Real chest X-rays (PneumoniaMNIST: 1,000 training images, 300 test images) and their left-right mirror
images as two classes, so only laterality tells them apart; the evaluate classifier recipe as composed from
conf/ (``budget=standard``: each group's own defaults) with 100 of its 300 steps; accuracy on the held-out
test pairs (chance 0.5). The same setup as ``tests/test_symmetries.py``; both arms in one run.

    OMP_NUM_THREADS=1 python benchmarks/laterality.py [--steps 100]    (~20 s of one CPU thread per arm)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthgen.config import compose  # noqa: E402
from synthgen.metrics.classifier import Recipe, predict_proba, train_classifier  # noqa: E402

SHARED = Path(os.environ.get("SYNTHGEN_SHARED_DATA", REPO.parent / "shared" / "data"))


def with_mirrors(images: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """``(N, H, W)`` uint8 -> ``(2N, 1, H, W)`` float [0, 1] (images, then their mirrors) and labels 0 / 1."""
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    return torch.cat([x, x.flip(-1)]), np.repeat(np.array([0, 1], np.int64), len(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "pneumoniamnist_imbalanced.npz"))
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = compose(["data=medmnist", f"data.path={args.data}", "budget=standard"], config_dir=REPO / "conf")
    z = np.load(args.data)
    x_train, y_train = with_mirrors(z["train_images"][:1000])
    x_test, y_test = with_mirrors(z["test_images"][:300])
    for arm, symmetries in (("old default (hflip, vflip)", ["hflip", "vflip"]),
                            (f"data.symmetries default {list(cfg.data.symmetries)}", cfg.data.symmetries)):
        recipe = Recipe.from_config(cfg.evaluate.classifier, symmetries=symmetries, steps=args.steps)
        t0 = time.perf_counter()
        model = train_classifier(x_train, y_train, None, 2, recipe, seed=0)
        acc = float((predict_proba(model, x_test, recipe.bf16).argmax(1) == y_test).mean())
        print(f"{arm}: held-out accuracy {acc:.3f} ({time.perf_counter() - t0:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
