"""MONAI ``AutoencoderKL`` vs diffusers ``AutoencoderKL`` at 128 px, 1 channel, the same latent (4 x 32 x 32, f=4).

Both get the same widths (32, 64, 64), one residual block per level, no attention, GroupNorm with 16 groups,
the same loss (L1 + 1e-6 KL), optimizer (AdamW 1e-3), batch size, number of steps, bf16 autocast and seed, on
PneumoniaMNIST images upsampled to 128 px (bilinear; from ``$SYNTHGEN_SHARED_DATA``). Reported per library: parameters, training images/s (CPU, one thread), peak RSS (each library in its own process),
and PSNR / SSIM of the reconstructions (posterior mean) of 128 held-out test images after the equal budget.

    OMP_NUM_THREADS=1 python benchmarks/latent_autoencoder.py [--steps 60] [--batch 8]   # equal steps
    OMP_NUM_THREADS=1 python benchmarks/latent_autoencoder.py --seconds 240              # equal CPU time

Result on this machine: docs/latent.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZE, LATENT, WIDTHS = 128, 4, (32, 64, 64)


def images(n_train: int, n_test: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(train, test)`` float32 ``(N, 1, 128, 128)`` in ``[0, 1]`` and where they came from."""
    path = Path(os.environ.get("SYNTHGEN_SHARED_DATA", "")) / "pneumoniamnist_imbalanced.npz"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; set SYNTHGEN_SHARED_DATA to the folder holding it")
    with np.load(path) as z:
        tr, te = z["train_images"][:n_train], z["test_images"][:n_test]
    src = f"{path.name} upsampled 28 -> {SIZE} px"

    def up(a: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(a, np.float32) / 255.0).reshape(len(a), 1, a.shape[-2], a.shape[-1])
        return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)

    return up(tr), up(te), src


def monai_ae(res_blocks: int = 1) -> tuple[torch.nn.Module, callable, callable]:
    from monai.networks.nets import AutoencoderKL

    net = AutoencoderKL(spatial_dims=2, in_channels=1, out_channels=1, channels=WIDTHS, num_res_blocks=res_blocks,
                        attention_levels=(False,) * len(WIDTHS), latent_channels=LATENT, norm_num_groups=16,
                        with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)
    return net, (lambda x: net.encode(x)), net.decode  # encode -> (mu, sigma)


def diffusers_ae() -> tuple[torch.nn.Module, callable, callable]:
    from diffusers import AutoencoderKL

    net = AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * len(WIDTHS),
                        up_block_types=("UpDecoderBlock2D",) * len(WIDTHS), block_out_channels=WIDTHS,
                        layers_per_block=1, latent_channels=LATENT, norm_num_groups=16, sample_size=SIZE,
                        mid_block_add_attention=False)

    def enc(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = net.encode(x).latent_dist
        return d.mean, d.std

    return net, enc, (lambda z: net.decode(z).sample)


def run(name: str, build, train: torch.Tensor, test: torch.Tensor, steps: int, batch: int,
        seconds: float | None = None) -> dict:
    """Train ``steps`` steps (or, with ``seconds``, as many as fit in that many seconds), then measure."""
    torch.manual_seed(0)
    net, enc, dec = build()
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    mu, _ = enc(test[:1])
    latent_shape = tuple(mu.shape[1:])
    t0, warm, step = time.perf_counter(), 3, 0
    while (step < steps + warm) if seconds is None else (step < warm or time.perf_counter() - t0 < seconds):
        if step == warm:
            t0 = time.perf_counter()
        step += 1
        idx = torch.randint(0, len(train), (batch,), generator=g)
        x = train[idx] * 2 - 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mu, sigma = enc(x)
            z = mu + sigma * torch.randn(mu.shape, generator=g, dtype=mu.dtype)
            rec = dec(z)
        mu, sigma = mu.float(), sigma.float().clamp_min(1e-6)
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 2 * sigma.log() - 1).flatten(1).sum(1).mean()
        loss = F.l1_loss(rec.float(), x) + 1e-6 * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
    elapsed, steps = time.perf_counter() - t0, step - warm
    net.eval()
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        recs = torch.cat([dec(enc(test[i:i + 32] * 2 - 1)[0]).float() for i in range(0, len(test), 32)])
    recs = ((recs + 1) / 2).clamp(0, 1)
    return {"library": name, "parameters": params, "latent": latent_shape,
            "steps": steps, "train_images_per_s": steps * batch / elapsed,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "psnr": float(peak_signal_noise_ratio(recs, test, data_range=1.0)),
            "ssim": float(structural_similarity_index_measure(recs, test, data_range=1.0)),
            "final_l1": float(loss.detach())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="equal-steps budget")
    ap.add_argument("--seconds", type=float, default=None, help="equal-time budget instead of --steps")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--monai-res-blocks", type=int, default=1,
                    help="MONAI residual blocks per level (2: closer to diffusers' parameter count)")
    ap.add_argument("--library", choices=("monai", "diffusers"), default=None,
                    help="run one library in this process and print its row as JSON (used by the parent)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.library:
        train, test, src = images(2000, 128)
        build = (lambda: monai_ae(args.monai_res_blocks)) if args.library == "monai" else diffusers_ae
        row = run(args.library, build, train, test, args.steps, args.batch, args.seconds)
        print(json.dumps({**row, "latent": list(row["latent"]), "source": src}))
        return
    rows = []
    for lib in ("monai", "diffusers"):  # one process each: clean peak RSS, no shared allocator state
        cmd = [sys.executable, __file__, "--library", lib, "--steps", str(args.steps), "--batch", str(args.batch),
               "--threads", str(args.threads), "--monai-res-blocks", str(args.monai_res_blocks)] + (["--seconds", str(args.seconds)] if args.seconds else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    budget = f"{args.seconds:g} s each" if args.seconds else f"{args.steps} steps each"
    budget += f", MONAI num_res_blocks={args.monai_res_blocks}"
    print(f"data: {rows[0]['source']}; batch {args.batch}, {budget}, {args.threads} thread(s), bf16 autocast")
    print(f"{'library':10s} {'params':>9s} {'latent':>9s} {'steps':>6s} {'train img/s':>12s} {'PSNR dB':>8s} "
          f"{'SSIM':>6s} {'L1':>7s} {'peak RSS MB':>12s}")
    for r in rows:
        print(f"{r['library']:10s} {r['parameters']:9d} {'x'.join(map(str, r['latent'])):>9s} {r['steps']:6d} "
              f"{r['train_images_per_s']:12.1f} {r['psnr']:8.2f} {r['ssim']:6.3f} {r['final_l1']:7.4f} "
              f"{r['peak_rss_mb']:12.0f}")
    m, d = rows
    print(f"monai/diffusers: speed {m['train_images_per_s'] / d['train_images_per_s']:.2f}x, "
          f"PSNR {m['psnr'] - d['psnr']:+.2f} dB, SSIM {m['ssim'] - d['ssim']:+.3f}, "
          f"params {m['parameters'] / d['parameters']:.2f}x")


if __name__ == "__main__":
    main()
