"""Quick real-data check of the diffusion model: train for a few minutes, then time the samplers.

Trains ``DiffusionModule`` (``conf/model/ddpm.yaml`` unless overridden) on a prepared split for
``--minutes``, saves the checkpoint, then reports single-process sampling images/s for DPM-Solver++ 10/20
and DDIM 25/50 steps (plus any ``--extra`` sampler:steps:guidance), a PNG grid (per class: one row of real,
rows of synthetic images) and, with ``--classifier``, the accuracy with which a small CNN trained on the real
training split recognizes each sampler's images as their intended class (a cheap fidelity proxy, not TSTR).

    python pipelines/prepare.py data=medmnist data.path=/work/shared/data/bloodmnist.npz paths.prepared=/tmp/diff_prep
    nice -n 5 python benchmarks/ddpm_quick.py --prepared /tmp/diff_prep --minutes 10 --out /tmp/ddpm_quick --classifier
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from synthgen.config import PROJECT_ROOT
from synthgen.data.prepared import load_split
from synthgen.models.diffusion import DiffusionModule


def build(meta_classes: list[str], shape: tuple[int, int, int], overrides: list[str]) -> DiffusionModule:
    root = OmegaConf.create({"seed": 0, "model": OmegaConf.load(PROJECT_ROOT / "conf" / "model" / "ddpm.yaml")})
    root.merge_with_dotlist([f"model.{o}" for o in overrides])
    kw = OmegaConf.to_container(root, resolve=True)["model"]
    kw.pop("_target_")
    return DiffusionModule(meta_classes, shape, **kw)


def grid_png(path: Path, real: np.ndarray, real_labels: np.ndarray, fake: torch.Tensor, fake_labels: torch.Tensor,
             k: int, per_row: int = 10) -> None:
    """Rows: for each class, one row of real then one row of synthetic images (uint8 PNG)."""
    rows = []
    for c in range(k):
        r = real[real_labels == c][:per_row]
        f = fake[fake_labels == c][:per_row].numpy()
        for block in (r, f):
            block = np.concatenate([block, np.zeros((per_row - len(block), *block.shape[1:]), block.dtype)])
            rows.append(np.concatenate(list(block), axis=2))  # (C, H, per_row * W)
    img = np.concatenate(rows, axis=1).transpose(1, 2, 0)
    img = (img * 255).round().clip(0, 255).astype(np.uint8)
    Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(path)


def small_cnn(c: int, k: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, k))


def train_classifier(x: torch.Tensor, y: torch.Tensor, k: int, epochs: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = small_cnn(x.shape[1], k)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            xb = x[idx]
            xb = torch.where(torch.rand(len(xb), 1, 1, 1, generator=g) < 0.5, xb.flip(-1), xb)
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), y[idx]).backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    pred = torch.cat([net(x[i:i + 512]).argmax(1) for i in range(0, len(x), 512)])
    return float((pred == y).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prepared", required=True)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--n-sample", type=int, default=256, help="images per timed sampler run")
    p.add_argument("--extra", nargs="*", default=[], help="more sampler:steps:guidance to time, e.g. dpmpp:10:2")
    p.add_argument("--only-extra", action="store_true", help="time only the --extra samplers")
    p.add_argument("--classifier", action="store_true", help="fidelity proxy with a real-trained CNN")
    p.add_argument("--flip", action="store_true", help="random horizontal flips while training")
    p.add_argument("--ckpt", default=None, help="skip training: sample from this checkpoint")
    p.add_argument("--out", default="/tmp/ddpm_quick")
    p.add_argument("overrides", nargs="*", help="model hyperparameters, e.g. lr=0.001 channels=[48,96,96]")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_split(a.prepared, "train")
    x = torch.from_numpy(train.images).float()
    y = torch.from_numpy(train.labels).long()
    k = len(train.class_names)
    L.seed_everything(0, verbose=False)
    model = build(train.class_names, tuple(x.shape[1:]), a.overrides)

    class Flip(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, i: int):
            img = x[i]
            if a.flip and torch.rand(()) < 0.5:
                img = img.flip(-1)
            return img, y[i]

    dl = torch.utils.data.DataLoader(Flip(), batch_size=a.batch, shuffle=True, drop_last=True,
                                     generator=torch.Generator().manual_seed(0))
    # Wall-clock rates depend on how busy the machine is; rates per CPU-second of this process do not
    # (much): on an idle machine with T threads, wall rate ~ T * per-CPU-second rate at best.
    res: dict = {"threads": torch.get_num_threads(), "load_avg_1min_at_start": os.getloadavg()[0]}
    if a.ckpt:
        model = DiffusionModule.load_from_checkpoint(a.ckpt, weights_only=True)
        res["checkpoint"] = a.ckpt
    else:
        trainer = L.Trainer(max_time={"seconds": int(a.minutes * 60)}, max_epochs=-1, accelerator="cpu",
                            devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.fit(model, dl)
        train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
        trainer.save_checkpoint(out / "model.ckpt")
        res.update(train_seconds=train_s, optimizer_steps=trainer.global_step,
                   train_images_per_s=trainer.global_step * a.batch / train_s, train_cpu_seconds=train_cpu,
                   train_images_per_cpu_s=trainer.global_step * a.batch / train_cpu,
                   final_train_loss=float(trainer.callback_metrics.get("train/loss_epoch", float("nan"))))
    res.update(hparams={k_: v for k_, v in dict(model.hparams).items() if k_ != "class_names"},
               params=sum(p_.numel() for p_ in model.net.parameters()), sampling={})
    print(json.dumps({k_: v for k_, v in res.items() if k_ != "hparams"}), flush=True)

    clf = None
    if a.classifier:
        c0 = time.perf_counter()
        clf = train_classifier(x, y, k)
        test = load_split(a.prepared, "test")
        res["classifier_real_test_acc"] = accuracy(clf, torch.from_numpy(test.images).float(),
                                                   torch.from_numpy(test.labels).long())
        res["classifier_seconds"] = time.perf_counter() - c0
        print("classifier real test acc", res["classifier_real_test_acc"], flush=True)

    labels = torch.arange(a.n_sample) % k
    seeds = torch.arange(a.n_sample) + 10_000
    runs = [] if a.only_extra else [("dpmpp", 10, 1.0), ("dpmpp", 20, 1.0), ("ddim", 25, 1.0), ("ddim", 50, 1.0)]
    for e in a.extra:
        s, n, g = e.split(":")
        runs.append((s, int(n), float(g)))
    model.generate(labels[:8], seeds[:8], sampler="dpmpp", steps=2)  # warm-up
    for sampler, steps, g in runs:
        t0, c0 = time.perf_counter(), time.process_time()
        imgs = model.generate(labels, seeds, sampler=sampler, steps=steps, guidance=g)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        key = f"{sampler}-{steps}-g{g:g}"
        res["sampling"][key] = {"images_per_s": a.n_sample / dt, "seconds": dt,
                                "images_per_cpu_s": a.n_sample / dc, "load_avg_1min": os.getloadavg()[0]}
        if clf is not None:
            res["sampling"][key]["real_classifier_acc"] = accuracy(clf, imgs, labels)
        grid_png(out / f"grid_{key}.png", train.images, train.labels, imgs, labels, k)
        print(key, res["sampling"][key], flush=True)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
