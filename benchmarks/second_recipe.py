"""Second-recipe check of the rare-class boost: does the exported synthetic cohort help a classifier that is
not the evaluate stage's?

Independent of synthgen on purpose (it imports no synthgen module): it reads the real splits from a prepared
folder with numpy and the synthetic images from the export's WebDataset shards with plain ``webdataset``, the
way a consumer would, and trains a MONAI ResNet (ResNet-18 by default; 2D, another architecture, optimizer, augmentation and a
longer budget than the evaluate stage's small ResNet) in two arms with the same seeds:

* ``oversampling``: real training images, every class drawn with equal probability (class-balanced sampler);
* ``oversampling + synthetic``: the same, except that each boosted class takes ``--share`` of its draws from
  the exported synthetic images of that class.

Per seed both arms start from the same initial weights and see the same number of steps, so the per-seed
differences are paired; the report gives mean +- std per arm and the mean gain with a 95% t-interval, for the
boosted classes' recall and balanced accuracy on the chosen real split (``test`` by default).

    OMP_NUM_THREADS=1 python benchmarks/second_recipe.py --prepared PREP --export EXPORT_DIR --classes basophil

``--cohort data/generated`` instead of ``--export`` reads a cohort folder (``cohort.npz`` + ``cohort.json``) with
numpy, e.g. the raw candidates before curation and the plan: it checks the evaluate stage's raw-synthetic arm
with this other classifier when the plan shipped nothing of the boosted class.

Needs MONAI (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def _images_and_labels(npz: str) -> tuple[np.ndarray, np.ndarray]:
    """``images`` as float32 in ``[0, 1]`` (integer types scaled by their maximum) and ``labels`` of one npz."""
    z = np.load(npz)
    x = z["images"]
    scale = float(np.iinfo(x.dtype).max) if np.issubdtype(x.dtype, np.integer) else 1.0
    return x.astype(np.float32) / scale, z["labels"].astype(np.int64)


def load_split(prepared: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Real images ``(N, C, H, W)`` float32 in ``[0, 1]`` and labels ``(N,)`` from ``<prepared>/<split>.npz``."""
    return _images_and_labels(os.path.join(prepared, f"{split}.npz"))


def load_export(export: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Synthetic images ``(M, C, H, W)`` float32 in ``[0, 1]``, labels and class names from an export folder."""
    import webdataset as wds

    index = json.load(open(os.path.join(export, "index.json"), encoding="utf-8"))
    shards = sorted(glob.glob(os.path.join(export, "*.tar")))
    xs, ys = [], []
    for s in wds.WebDataset(shards, shardshuffle=False).decode():
        a = s["npy"]
        xs.append(a.astype(np.float32) / float(np.iinfo(a.dtype).max if np.issubdtype(a.dtype, np.integer) else 1))
        ys.append(int(s["cls"]))
    if not xs:
        return np.zeros((0,), np.float32), np.zeros((0,), np.int64), index["class_names"]
    return np.stack(xs), np.asarray(ys, np.int64), index["class_names"]


def load_cohort_folder(folder: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Synthetic images ``(M, C, H, W)`` float32 in ``[0, 1]``, labels and class names from ``cohort.npz`` +
    ``cohort.json`` (a synthgen cohort folder, read with numpy only)."""
    x, y = _images_and_labels(os.path.join(folder, "cohort.npz"))
    names = json.load(open(os.path.join(folder, "cohort.json"), encoding="utf-8"))["class_names"]
    return x, y, list(names)


def draw_indices(n_steps: int, batch: int, pools: list[np.ndarray], pool_weights: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """``(n_steps, batch)`` indices into the concatenated pools: pool by weight, then uniform inside it."""
    offsets = np.cumsum([0] + [len(p) for p in pools])[:-1]
    which = rng.choice(len(pools), size=(n_steps, batch), p=pool_weights / pool_weights.sum())
    out = np.empty((n_steps, batch), np.int64)
    for k, p in enumerate(pools):
        m = which == k
        out[m] = offsets[k] + rng.integers(0, len(p), size=int(m.sum()))
    return out


def augment(x: torch.Tensor, gen: torch.Generator, shift: int = 3) -> torch.Tensor:
    """Random integer shifts up to ``shift`` px (edge padding) and brightness/contrast jitter of 10%; no flips."""
    n, _, h, w = x.shape
    pad = F.pad(x, (shift,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=gen)
    out = torch.stack([pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    a = 1 + 0.1 * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    b = 0.1 * (2 * torch.rand(n, 1, 1, 1, generator=gen) - 1)
    return (out * a + b).clamp(0, 1)


def train_eval(x: np.ndarray, y: np.ndarray, pools: list[np.ndarray], weights: np.ndarray, x_eval: np.ndarray,
               y_eval: np.ndarray, n_classes: int, seed: int, steps: int, batch: int, arch: str) -> np.ndarray:
    """Train a MONAI ResNet (``arch``: resnet10/18/34; 3x3 stem of stride 2, no max-pool) from ``seed`` and return its predictions ``(len(x_eval),)`` on the eval split."""
    from monai.networks import nets

    torch.manual_seed(seed)
    model = getattr(nets, arch)(spatial_dims=2, n_input_channels=x.shape[1], num_classes=n_classes,
                                conv1_t_size=3, conv1_t_stride=2, no_max_pool=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    idx = draw_indices(steps, batch, pools, weights, np.random.default_rng(seed + 1000))
    gen = torch.Generator().manual_seed(seed + 2000)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for s in range(steps):
        b = torch.from_numpy(idx[s])
        loss = F.cross_entropy(model(augment(xt[b], gen) * 2 - 1), yt[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(x_eval), 512):
            preds.append(model(torch.from_numpy(x_eval[i:i + 512]) * 2 - 1).argmax(1).numpy())
    return np.concatenate(preds)


def scores(pred: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, float]:
    """Per-class recall ``(n_classes,)`` (nan where absent) and balanced accuracy (mean over present classes)."""
    rec = np.array([np.mean(pred[y == c] == c) if np.any(y == c) else np.nan for c in range(n_classes)])
    return rec, float(np.nanmean(rec))


def interval(d: list[float]) -> dict[str, float]:
    """Mean, std and 95% t-interval of paired differences."""
    a = np.asarray(d, float)
    m = float(a.mean())
    if len(a) < 2:
        return {"mean": m, "std": float("nan"), "lo": float("nan"), "hi": float("nan")}
    sd = float(a.std(ddof=1))
    h = T975.get(len(a) - 1, 1.96) * sd / math.sqrt(len(a))
    return {"mean": m, "std": sd, "lo": m - h, "hi": m + h}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prepared", required=True, help="prepared folder (train/val/test .npz)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--export", help="export folder with index.json and *.tar shards")
    src.add_argument("--cohort", help="cohort folder (cohort.npz + cohort.json), e.g. data/generated")
    ap.add_argument("--classes", nargs="+", required=True, help="boosted classes (names)")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--arch", default="resnet18", choices=["resnet10", "resnet18", "resnet34"])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--share", type=float, default=0.5, help="share of a boosted class's draws from synthetic")
    ap.add_argument("--out", default=None, help="write the report as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    xr, yr = load_split(a.prepared, "train")
    xe, ye = load_split(a.prepared, a.split)
    xs, ys, names = load_export(a.export) if a.export else load_cohort_folder(a.cohort)
    n_classes = len(names)
    boosted = [names.index(c) for c in a.classes]
    print(f"real train {len(xr)}, synthetic {len(xs)} ({', '.join(f'{names[c]}: {int((ys == c).sum())}' for c in boosted)}), "
          f"{a.split} {len(xe)}", flush=True)

    x_all = np.concatenate([xr, xs]) if len(xs) else xr
    y_all = np.concatenate([yr, ys]) if len(xs) else yr
    real_pools = [np.flatnonzero(yr == c) for c in range(n_classes) if np.any(yr == c)]
    present = [c for c in range(n_classes) if np.any(yr == c)]
    base_w = np.ones(len(real_pools))
    pools_b, w_b = list(real_pools), list(base_w)
    for c in boosted:
        syn = len(xr) + np.flatnonzero(ys == c)
        if not len(syn):
            continue
        k = present.index(c)
        w_b[k] = 1 - a.share
        pools_b.append(syn)
        w_b.append(a.share)

    runs = {"oversampling": [], "oversampling+synthetic": []}
    t0 = time.time()
    for seed in range(a.seeds):
        for arm, (pools, w) in (("oversampling", (real_pools, base_w)),
                                ("oversampling+synthetic", (pools_b, np.asarray(w_b)))):
            pred = train_eval(x_all, y_all, pools, np.asarray(w, float), xe, ye, n_classes, seed, a.steps, a.batch, a.arch)
            rec, bacc = scores(pred, ye, n_classes)
            runs[arm].append({"recall": rec.tolist(), "balanced_accuracy": bacc})
            print(f"seed {seed} {arm}: " + ", ".join(f"{names[c]} recall {rec[c]:.3f}" for c in boosted)
                  + f", balanced accuracy {bacc:.4f} ({time.time() - t0:.0f} s)", flush=True)

    report = {"synthetic_source": "export" if a.export else "cohort", "split": a.split, "seeds": a.seeds,
              "steps": a.steps, "batch": a.batch, "share": a.share,
              "model": f"monai {a.arch} (2D, 3x3 stem of stride 2, no max-pool)", "classes": a.classes,
              "n_synthetic": {names[c]: int((ys == c).sum()) for c in boosted}, "arms": {}, "gain": {},
              "wall_s": round(time.time() - t0, 1)}
    for arm, rs in runs.items():
        bacc = [r["balanced_accuracy"] for r in rs]
        report["arms"][arm] = {"balanced_accuracy": interval(bacc)} | {
            f"recall_{names[c]}": interval([r["recall"][c] for r in rs]) for c in boosted}
    base, boost = runs["oversampling"], runs["oversampling+synthetic"]
    report["gain"]["balanced_accuracy"] = interval([q["balanced_accuracy"] - p["balanced_accuracy"]
                                                    for p, q in zip(base, boost)])
    for c in boosted:
        report["gain"][f"recall_{names[c]}"] = interval([q["recall"][c] - p["recall"][c] for p, q in zip(base, boost)])
    for k, v in report["gain"].items():
        print(f"gain {k}: {v['mean']:+.4f} (95% CI [{v['lo']:+.4f}, {v['hi']:+.4f}])")
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
