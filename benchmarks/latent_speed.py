"""Latent vs pixel-space diffusion at 128 px, 1 channel: training and sampling images/s and peak RSS, one thread.

Both arms use the same class-conditional UNet recipe (:class:`synthgen.models.unet.ClassConditionalUNet`, the
widths and depth given by ``--channels``, one block per level, bf16 autocast, AdamW) and the same batch size:

- pixel:  :class:`~synthgen.models.diffusion.DiffusionModule` on ``(1, 128, 128)`` images;
- latent: :class:`~synthgen.models.latent.LatentDiffusionModule` on ``(4, 32, 32)`` latents of the default
  autoencoder (``conf/autoencoder/default.yaml``: MONAI AutoencoderKL, channels [32, 64, 64], f = 4). Training
  steps see latents encoded once up front (what the train stage does); that one-time encode is timed apart and
  also folded in as "amortized over E epochs". Sampling includes decoding.

Throughput does not depend on the image content or the weights, so random images and untrained weights are
used. Each arm runs in its own process (clean peak RSS, ``ru_maxrss``). Everything is measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/latent_speed.py [--channels 32,64,64] [--batch 16] [--steps 6]

Result on this machine: docs/latent.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZE, CLASSES = 128, ["normal", "pneumonia"]


def build(arm: str, channels: list[int]):
    from synthgen.models.autoencoder import AutoencoderModule
    from synthgen.models.diffusion import DiffusionModule
    from synthgen.models.latent import LatentDiffusionModule

    torch.manual_seed(0)
    common = dict(channels=channels, blocks_per_level=1, autocast=True, seed=0, warmup_steps=1)
    if arm == "pixel":
        return DiffusionModule(CLASSES, [1, SIZE, SIZE], **common)
    ae = AutoencoderModule([1, SIZE, SIZE])  # conf/autoencoder/default.yaml widths and latent
    return LatentDiffusionModule(CLASSES, [1, SIZE, SIZE], autoencoder=dict(ae.hparams), latent_scale=1.0, **common)


def train_rate(model, batch: int, steps: int) -> dict:
    """Optimizer steps on one fixed batch (the step's cost does not depend on the values)."""
    images = np.random.default_rng(0).random((batch, 1, SIZE, SIZE), dtype=np.float32)
    out: dict = {}
    if hasattr(model, "training_inputs"):
        reps = 3
        t = time.perf_counter()
        for _ in range(reps):
            inputs = model.training_inputs(images)
        out["encode_images_per_s"] = reps * batch / (time.perf_counter() - t)
    else:
        inputs = images
    x = torch.from_numpy(inputs)
    y = torch.zeros(batch, dtype=torch.long)
    opt = model.configure_optimizers()["optimizer"]
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        t = torch.randint(0, 1000, (batch,), generator=g)
        eps = torch.randn(x.shape, generator=g)
        loss = model.diffusion_loss(x, y, t, eps).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    model.train()
    step()  # warm-up (oneDNN primitive creation)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    out["train_images_per_s"] = steps * batch / (time.perf_counter() - t0)
    return out


def sample_rate(model, n: int, steps: int) -> dict:
    labels, seeds = torch.zeros(n, dtype=torch.long), torch.arange(n)
    model.generate(labels[:2], seeds[:2], steps=2)  # warm-up
    t0 = time.perf_counter()
    imgs = model.generate(labels, seeds, steps=steps)
    dt = time.perf_counter() - t0
    assert imgs.shape == (n, 1, SIZE, SIZE)
    return {"sample_images_per_s": n / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", default="32,64,64", help="UNet widths per level (both arms)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6, help="timed training steps")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--sampler-steps", type=int, default=10, help="DPM-Solver++ steps (generate's default)")
    ap.add_argument("--epochs", type=int, default=50, help="epochs the one-time encode is amortized over")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arm", choices=("pixel", "latent"), default=None, help="(internal) one arm, JSON out")
    args = ap.parse_args()
    channels = [int(c) for c in args.channels.split(",")]
    torch.set_num_threads(args.threads)
    if args.arm:
        model = build(args.arm, channels)
        row = {"arm": args.arm, "unet_parameters": sum(p.numel() for p in model.net.parameters()),
               "diffusion_shape": list(model.sample_shape)}
        row.update(train_rate(model, args.batch, args.steps))
        row.update(sample_rate(model, args.samples, args.sampler_steps))
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(row))
        return
    rows = {}
    for arm in ("pixel", "latent"):
        cmd = [sys.executable, __file__, "--arm", arm] + [a for a in sys.argv[1:]]
        rows[arm] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    p, q = rows["pixel"], rows["latent"]
    amort = 1 / (1 / q["train_images_per_s"] + 1 / (args.epochs * q["encode_images_per_s"]))
    print(f"128 px, 1 channel, UNet channels {channels}, batch {args.batch}, {args.threads} thread(s), bf16 autocast; "
          f"sampling: dpmpp {args.sampler_steps} steps, {args.samples} images")
    print(f"{'arm':7s} {'x0 shape':>11s} {'UNet params':>11s} {'train img/s':>12s} {'sample img/s':>13s} "
          f"{'peak RSS MB':>12s}")
    for r in (p, q):
        print(f"{r['arm']:7s} {'x'.join(map(str, r['diffusion_shape'])):>11s} {r['unet_parameters']:11d} "
              f"{r['train_images_per_s']:12.1f} {r['sample_images_per_s']:13.2f} {r['peak_rss_mb']:12.0f}")
    print(f"latent one-time encode: {q['encode_images_per_s']:.1f} images/s; latent training amortized over "
          f"{args.epochs} epochs: {amort:.1f} images/s")
    print(f"latent/pixel: training {q['train_images_per_s'] / p['train_images_per_s']:.2f}x "
          f"({amort / p['train_images_per_s']:.2f}x incl. encode over {args.epochs} epochs), sampling incl. decode "
          f"{q['sample_images_per_s'] / p['sample_images_per_s']:.2f}x, peak RSS "
          f"{q['peak_rss_mb'] / p['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
