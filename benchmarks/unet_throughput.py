"""Diffusion UNet training throughput: ours vs MONAI ``DiffusionModelUNet`` vs diffusers ``UNet2DModel``.

One training step = zero_grad + forward + MSE loss + backward + AdamW step on the same batch
``(B, C, S, S)``, same precision (bf16 autocast on CPU by default), same thread count. The two reference
UNets are configured attention-free where the library allows it (MONAI's middle block always carries one
attention layer) with class embeddings, and their width is searched so that their parameter count is
within 10% of ours. Models are timed round-robin (warm-up first, then ``--repeats`` rounds of ``--steps``
steps each), so load drift on a shared machine hits all of them alike; we report median images/s, the
min-max spread, and ours/reference ratios computed per round (median and spread).

    python benchmarks/unet_throughput.py                       # default model (conf/model/ddpm.yaml widths)
    python benchmarks/unet_throughput.py --channels 48 96 96 --blocks 1 --threads 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from synthgen.models.unet import ClassConditionalUNet, count_parameters


def ours(in_ch: int, k: int, channels: list[int], blocks: int) -> tuple[nn.Module, Callable]:
    m = ClassConditionalUNet(in_ch, k, channels, blocks)
    return m, lambda x, t, y: m(x, t, y)


def monai_unet(in_ch: int, k: int, width: int, blocks: int, mult: list[int]) -> tuple[nn.Module, Callable]:
    from monai.networks.nets import DiffusionModelUNet

    ch = [width * m for m in mult]
    m = DiffusionModelUNet(spatial_dims=2, in_channels=in_ch, out_channels=in_ch, num_res_blocks=blocks,
                           channels=ch, attention_levels=[False] * len(ch), norm_num_groups=8,
                           num_class_embeds=k + 1)
    return m, lambda x, t, y: m(x, t, class_labels=y)


def diffusers_unet(in_ch: int, k: int, width: int, blocks: int, mult: list[int], size: int) -> tuple[nn.Module, Callable]:
    from diffusers import UNet2DModel

    ch = tuple(width * m for m in mult)
    m = UNet2DModel(sample_size=size, in_channels=in_ch, out_channels=in_ch, layers_per_block=blocks,
                    block_out_channels=ch, down_block_types=("DownBlock2D",) * len(ch),
                    up_block_types=("UpBlock2D",) * len(ch), add_attention=False, norm_num_groups=8,
                    num_class_embeds=k + 1)
    return m, lambda x, t, y: m(x, t, class_labels=y).sample


def matched(build: Callable[[int, int], tuple[nn.Module, Callable]], target: int) -> tuple[nn.Module, Callable, str]:
    """The (width, blocks) of ``build`` whose parameter count is closest to ``target`` (must be within 10%)."""
    best = None
    for blocks in (1, 2):
        for width in range(8, 257, 8):
            n = count_parameters(build(width, blocks)[0])
            if best is None or abs(n - target) < abs(best[0] - target):
                best = (n, width, blocks)
    n, width, blocks = best
    if abs(n - target) > 0.1 * target:
        raise RuntimeError(f"no configuration within 10% of {target} parameters (closest {n})")
    m, fn = build(width, blocks)
    return m, fn, f"width={width} blocks={blocks}"


def train_step_fn(model: nn.Module, fn: Callable, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                  bf16: bool) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.randn_like(x)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = fn(x, t, y)
        F.mse_loss(out.float(), target).backward()
        opt.step()

    return step


def machine() -> dict:
    """CPU model, core count and library versions of this run."""
    import os

    import diffusers
    import monai

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "monai": monai.__version__,
            "diffusers": diffusers.__version__, "python": platform.python_version(),
            "load_avg_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}


def run(channels: list[int], blocks: int, batch: int = 64, size: int = 28, in_ch: int = 3, classes: int = 8,
        steps: int = 3, repeats: int = 5, warmup: int = 2, bf16: bool = True, threads: int | None = None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    mult = [c // channels[0] for c in channels] if all(c % channels[0] == 0 for c in channels) else [1, 2, 2]
    ref, ref_fn = ours(in_ch, classes, channels, blocks)
    n_ours = count_parameters(ref)
    m_monai, f_monai, cfg_monai = matched(lambda w, b: monai_unet(in_ch, classes, w, b, mult), n_ours)
    m_diff, f_diff, cfg_diff = matched(lambda w, b: diffusers_unet(in_ch, classes, w, b, mult, size), n_ours)
    models = {"ours": (ref, ref_fn, f"channels={channels} blocks={blocks}"),
              "monai": (m_monai, f_monai, cfg_monai), "diffusers": (m_diff, f_diff, cfg_diff)}
    x = torch.randn(batch, in_ch, size, size)
    t = torch.randint(0, 1000, (batch,))
    y = torch.randint(0, classes + 1, (batch,))
    fns = {name: train_step_fn(m.train(), fn, x, t, y, bf16) for name, (m, fn, _) in models.items()}
    if bf16:  # does bf16 autocast pay for our UNet? (a separate copy, same weights, in float32)
        import copy

        fp32 = copy.deepcopy(ref)
        models["ours_fp32"] = (fp32, lambda x_, t_, y_: fp32(x_, t_, y_), "ours without autocast")
        fns["ours_fp32"] = train_step_fn(fp32.train(), models["ours_fp32"][1], x, t, y, False)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            rates[name].append(batch * steps / (time.perf_counter() - t0))
    out = {"case": "unet_train_throughput", "batch": batch, "image": [in_ch, size, size], "bf16": bf16,
           "threads": torch.get_num_threads(), "steps_per_repeat": steps, "repeats": repeats, "warmup": warmup,
           "machine": machine(), "models": {}}
    for name, (m, _, cfg) in models.items():
        r = rates[name]
        out["models"][name] = {"config": cfg, "params": count_parameters(m), "images_per_s_median": statistics.median(r),
                               "images_per_s_min": min(r), "images_per_s_max": max(r)}
        if name != "ours":  # ratio > 1: ours is faster
            ratios = [a / b for a, b in zip(rates["ours"], r)]
            out["models"][name].update(ours_ratio_median=statistics.median(ratios), ours_ratio_min=min(ratios),
                                       ours_ratio_max=max(ratios))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--channels", type=int, nargs="+", default=None, help="default: conf/model/ddpm.yaml")
    p.add_argument("--blocks", type=int, default=None)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--in-ch", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--fp32", action="store_true", help="disable bf16 autocast")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the result here")
    a = p.parse_args()
    if a.channels is None or a.blocks is None:
        from omegaconf import OmegaConf

        from synthgen.config import PROJECT_ROOT

        cfg = OmegaConf.load(PROJECT_ROOT / "conf" / "model" / "ddpm.yaml")
        a.channels = a.channels or list(cfg.channels)
        a.blocks = a.blocks or int(cfg.blocks_per_level)
    res = run(a.channels, a.blocks, a.batch, a.size, a.in_ch, steps=a.steps, repeats=a.repeats, bf16=not a.fp32,
              threads=a.threads)
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
