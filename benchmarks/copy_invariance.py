"""Should the copy-detection encoder be flip/rotation invariant? (issue 13; decision in synthgen/privacy/embedding.py)

Trains the copy encoder (``privacy.embedding`` defaults, 300 steps) on PneumoniaMNIST's training split
(3,882 chest X-rays), calibrates the embedding rule on val (its 99th percentile of the max cosine to train,
images that are near-exact duplicates of training images left out, as the gate does) and reports the
rule's recall on 300 planted copies of training images per kind: ``mild`` and ``moderate`` edits
(:mod:`synthgen.privacy.plant`), horizontally mirrored (``hflip``) and 90-degree rotated (``rot90``) copies,
plus the false-flag rate on test. Variants, all in one process (a ratio against the reference):

* ``plain``    -- the encoder as shipped (no flips in its training views), one query view (reference);
* ``orbit``    -- the same encoder, each query scored by the max over its 8 dihedral views;
* ``dihedral`` -- trained with a random dihedral transform (flips, right-angle rotations) on every view;
* ``hflip``    -- trained with random horizontal flips only.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/copy_invariance.py [--variants plain,orbit] [--steps 300]

(each trained variant takes ~1-2 min on one loaded CPU thread.)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import synthgen.privacy.embedding as emb  # noqa: E402
from synthgen.data.symmetries import random_matrices  # noqa: E402
from synthgen.privacy.plant import plant_copies  # noqa: E402

SHARED = Path(os.environ.get("SYNTHGEN_SHARED_DATA", REPO.parent / "shared" / "data"))


def _with_views(symmetries: tuple[str, ...]):
    """``copy_augment`` preceded by an exact random element of the group of ``symmetries``."""
    plain = emb.copy_augment

    def augment(x: torch.Tensor, cfg: emb.EmbeddingConfig, g: torch.Generator) -> torch.Tensor:
        theta = torch.cat([random_matrices(len(x), symmetries, g), torch.zeros(len(x), 2, 1)], 2)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return plain(F.grid_sample(x, grid, mode="nearest", align_corners=False), cfg, g)

    return augment


def _not_duplicates(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    d = torch.cdist(torch.from_numpy(x.reshape(len(x), -1)), torch.from_numpy(train.reshape(len(train), -1)))
    return x[(d.min(1).values > 0.5).numpy()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "pneumoniamnist_imbalanced.npz"))
    ap.add_argument("--variants", default="plain,orbit,dihedral,hflip")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--quantile", type=float, default=0.99)
    args = ap.parse_args()
    torch.set_num_threads(1)
    z = np.load(args.data)
    train = z["train_images"][:, None].astype(np.float32) / 255
    hold = _not_duplicates(z["val_images"][:, None].astype(np.float32) / 255, train)
    neg = _not_duplicates(z["test_images"][:, None].astype(np.float32) / 255, train)
    idx = np.sort(np.random.default_rng(0).choice(len(train), 300, replace=False))
    planted = {s: plant_copies(train, idx, s, 7)[0] for s in ("mild", "moderate")}
    planted["hflip"] = train[idx][..., ::-1].copy()
    planted["rot90"] = np.rot90(train[idx], 1, (-2, -1)).copy()
    cfg = emb.EmbeddingConfig(steps=args.steps)
    trained: dict[str, emb.CopyEncoder] = {}
    print(f"{len(train)} train, {len(hold)} val (calibration), {len(neg)} test negatives, 300 planted per kind; "
          f"threshold = val quantile {args.quantile}")
    for variant in args.variants.split(","):
        t0 = time.time()
        train_as = "plain" if variant == "orbit" else variant
        if train_as not in trained:
            views = {"plain": None, "dihedral": ("hflip", "vflip", "rot90"), "hflip": ("hflip",)}[train_as]
            original = emb.copy_augment
            emb.copy_augment = original if views is None else _with_views(views)
            try:
                trained[train_as] = emb.train_encoder(train, cfg)
            finally:
                emb.copy_augment = original
        model = trained[train_as]
        e_train = emb.embed(model, train)

        def score(x: np.ndarray) -> np.ndarray:
            views = [x] if variant != "orbit" else [np.rot90(v, k, (-2, -1)).copy()
                                                     for v in (x, x[..., ::-1].copy()) for k in range(4)]
            return np.max([(emb.embed(model, v) @ e_train.T).max(1).values.numpy() for v in views], axis=0)

        thr = float(np.quantile(score(hold), args.quantile))
        recall = " ".join(f"{k} {float((score(x) >= thr).mean()):.3f}" for k, x in planted.items())
        print(f"{variant:9s} recall: {recall} | false flags on test {float((score(neg) >= thr).mean()):.3f} "
              f"| threshold {thr:.4f} | {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
