"""Benchmark case ``unet``: diffusion training throughput, our UNet vs MONAI and diffusers of the same size.

One training step = zero_grad + forward + MSE loss + backward + AdamW step on the same batch
``(B, 3, 28, 28)`` (BloodMNIST's shape; batch 64, 32 in ``--quick``), with bf16 autocast for every model
and the same torch thread count. References, measured in the same run:

* MONAI ``DiffusionModelUNet`` (attention-free levels; its middle block always carries one attention layer),
* diffusers ``UNet2DModel`` (``DownBlock2D``/``UpBlock2D``, ``add_attention=False``),

both with class embeddings and with the width and blocks per level searched so that their parameter count
is within 10% of ours (``conf/model/ddpm.yaml``). Models are timed round-robin (warm-up first, then repeats
of ``steps`` steps each), so load drift on a shared machine hits all of them alike. On a CPU the clock is
CPU seconds of this process (one torch thread unless ``$SYNTHGEN_BENCH_THREADS``); on a GPU wall seconds.
Our fp32 (no autocast) is a fourth variant: does bf16 pay? Target: ours >= 1.5x both references.
"""

from __future__ import annotations

import copy
import statistics
from typing import Callable

from benchmarks.harness import Context, Row, Timing, cpu_clock, set_threads, sync

CASE = "unet"
METRIC = "train images/s"


def _ours(in_ch: int, k: int, channels: list[int], blocks: int):
    from synthgen.models.unet import ClassConditionalUNet

    m = ClassConditionalUNet(in_ch, k, channels, blocks)
    return m, lambda x, t, y: m(x, t, y)


def _monai(in_ch: int, k: int, width: int, blocks: int, mult: list[int]):
    from monai.networks.nets import DiffusionModelUNet

    ch = [width * m for m in mult]
    m = DiffusionModelUNet(spatial_dims=2, in_channels=in_ch, out_channels=in_ch, num_res_blocks=blocks,
                           channels=ch, attention_levels=[False] * len(ch), norm_num_groups=8,
                           num_class_embeds=k + 1)
    return m, lambda x, t, y: m(x, t, class_labels=y)


def _diffusers(in_ch: int, k: int, width: int, blocks: int, mult: list[int], size: int):
    from diffusers import UNet2DModel

    ch = tuple(width * m for m in mult)
    m = UNet2DModel(sample_size=size, in_channels=in_ch, out_channels=in_ch, layers_per_block=blocks,
                    block_out_channels=ch, down_block_types=("DownBlock2D",) * len(ch),
                    up_block_types=("UpBlock2D",) * len(ch), add_attention=False, norm_num_groups=8,
                    num_class_embeds=k + 1)
    return m, lambda x, t, y: m(x, t, class_labels=y).sample


def matched(build: Callable[[int, int], tuple], target: int) -> tuple:
    """``(model, call, config)`` of ``build(width, blocks)`` with the parameter count closest to ``target``.

    Widths 8, 16, ... per blocks in (1, 2); the parameter count grows with width, so the search stops once
    it passes 1.2x the target. Raises ``RuntimeError`` when nothing is within 10%.
    """
    from synthgen.models.unet import count_parameters

    best = None
    for blocks in (1, 2):
        for width in range(8, 257, 8):
            n = count_parameters(build(width, blocks)[0])
            if best is None or abs(n - target) < abs(best[0] - target):
                best = (n, width, blocks)
            if n > 1.2 * target:
                break
    n, width, blocks = best
    if abs(n - target) > 0.1 * target:
        raise RuntimeError(f"no configuration within 10% of {target} parameters (closest {n})")
    m, fn = build(width, blocks)
    return m, fn, f"width={width} blocks={blocks}"


def _step_fn(model, call, x, t, y, bf16: bool, device: str) -> Callable[[], None]:
    import torch
    import torch.nn.functional as F

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.randn_like(x)
    dev_type = "cuda" if device.startswith("cuda") else "cpu"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=bf16):
            out = call(x, t, y)
        F.mse_loss(out.float(), target).backward()
        opt.step()

    return step


def run(ctx: Context) -> list[Row]:
    import torch
    from omegaconf import OmegaConf

    from synthgen.config import PROJECT_ROOT
    from synthgen.models.unet import count_parameters

    threads = set_threads(ctx)
    clock = cpu_clock(ctx.device)
    cfg = OmegaConf.load(PROJECT_ROOT / "conf" / "model" / "ddpm.yaml")
    channels, blocks = [int(c) for c in cfg.channels], int(cfg.blocks_per_level)
    batch, size, in_ch, classes = (32 if ctx.quick else 64), 28, 3, 8
    steps, repeats, warmup = (1, 3, 1) if ctx.quick else (3, 5, 2)
    mult = [c // channels[0] for c in channels]
    torch.manual_seed(0)
    ours, ours_call = _ours(in_ch, classes, channels, blocks)
    n_ours = count_parameters(ours)
    monai, monai_call, monai_cfg = matched(lambda w, b: _monai(in_ch, classes, w, b, mult), n_ours)
    diff, diff_call, diff_cfg = matched(lambda w, b: _diffusers(in_ch, classes, w, b, mult, size), n_ours)
    fp32 = copy.deepcopy(ours)
    models = {  # name: (module, call, config, bf16)
        "MONAI DiffusionModelUNet": (monai, monai_call, monai_cfg, True),
        "diffusers UNet2DModel": (diff, diff_call, diff_cfg, True),
        "ours fp32": (fp32, lambda x_, t_, y_: fp32(x_, t_, y_), f"channels={channels} blocks={blocks}", False),
        "ours": (ours, ours_call, f"channels={channels} blocks={blocks}", True),
    }
    dev = torch.device(ctx.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, in_ch, size, size, generator=g).to(dev)
    t = torch.randint(0, 1000, (batch,), generator=g).to(dev)
    y = torch.randint(0, classes + 1, (batch,), generator=g).to(dev)
    fns = {name: _step_fn(m.to(dev).train(), call, x, t, y, bf16, ctx.device)
           for name, (m, call, _, bf16) in models.items()}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(ctx.device)
    secs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):  # round-robin: drift in machine load hits every model alike
        for name, fn in fns.items():
            t0 = clock()
            for _ in range(steps):
                fn()
            sync(ctx.device)
            secs[name].append((clock() - t0) / steps)
    clock_name = "CPU" if clock is not None and not ctx.device.startswith("cuda") else "wall"
    rows = []
    for name, (m, _, config, bf16) in models.items():
        timing = Timing(secs[name])
        n_par = count_parameters(m)
        note = (f"{config}, {n_par / 1e6:.3f} M parameters ({100 * (n_par / n_ours - 1):+.1f}% vs ours), "
                f"{'bf16 autocast' if bf16 else 'fp32'}, batch {batch}x{in_ch}x{size}x{size}, {threads} thread(s), "
                f"images per {clock_name} second")
        print(f"   {name}: {note}", flush=True)
        extra = {"params": n_par, "config": config, "batch": batch, "threads": threads, "clock": clock_name,
                 "seconds_per_step": secs[name]}
        refs = ["MONAI DiffusionModelUNet", "diffusers UNet2DModel"] if name == "ours" else (
            ["ours"] if name == "ours fp32" else [None])
        for ref in refs:
            if ref and ref != "ours":  # per-round ratios: robust to load drift between rounds
                per_round = [b / a for a, b in zip(secs[name], secs[ref])]
                extra = {**extra, f"per_round_ratio_vs_{ref.split()[0]}": statistics.median(per_round)}
            rows.append(Row(CASE, name, METRIC, batch / timing.median, "img/s", timing.spread, reference=ref,
                            note=note, extra=extra))
    return rows
