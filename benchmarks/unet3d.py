"""3D diffusion UNet training throughput: our UNet (``spatial_dims=3``) vs MONAI's 3D ``DiffusionModelUNet``.

One training step = zero_grad + forward + MSE loss + backward + AdamW step on one batch ``(B, 1, S, S, S)``
(default ``S = 32``, ``B = 4``), bf16 autocast for both models (``--fp32`` to switch it off) and the same torch
thread count. MONAI is attention-free at every level (its middle block always holds one attention layer, at
``S / 2**(levels-1)`` voxels per axis) and its width (multiples of 4, GroupNorm of 4 groups) and blocks per
level are searched so that its parameter count is within 10% of ours (:func:`matched`). Models are timed round-robin (warm-up, then
``--repeats`` rounds of ``--steps`` steps each), so drift in the load of a shared machine hits both alike; the
clock is this process's CPU seconds on CPU (one torch thread unless ``--threads``), wall seconds on a GPU. The
figure that matters is the per-round ratio ours / MONAI, measured in the same run.

Usage::

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/unet3d.py --size 32 --batch 4 --channels 32 64 64
    python benchmarks/unet3d.py --device cuda --size 64 --batch 8        # GPU figures (benchmark only)

Prints one JSON object (volumes/s per model, parameters, configurations, per-round ratio).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cases.unet import _step_fn  # noqa: E402


def matched(build, target: int) -> tuple:
    """``(model, call, config)`` of ``build(width, blocks)`` with the parameter count closest to ``target``
    (widths 4, 8, ... per blocks in (1, 2): 3D parameter counts grow in steps too coarse for multiples of 8).
    Raises ``RuntimeError`` when nothing is within 10%."""
    from synthgen.models.unet import count_parameters

    best = None
    for blocks in (1, 2):
        for width in range(4, 257, 4):
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


def _ours(k: int, channels: list[int], blocks: int):
    from synthgen.models.unet import ClassConditionalUNet

    m = ClassConditionalUNet(1, k, channels, blocks, spatial_dims=3)
    return m, lambda x, t, y: m(x, t, y)


def _monai(k: int, width: int, blocks: int, mult: list[int]):
    from monai.networks.nets import DiffusionModelUNet

    ch = [width * m for m in mult]
    m = DiffusionModelUNet(spatial_dims=3, in_channels=1, out_channels=1, num_res_blocks=blocks, channels=ch,
                           attention_levels=[False] * len(ch), norm_num_groups=4, num_class_embeds=k + 1)
    return m, lambda x, t, y: m(x, t, class_labels=y)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64])
    ap.add_argument("--blocks", type=int, default=1)
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    a = ap.parse_args(argv)

    import torch

    from synthgen.models.unet import count_parameters

    if not a.device.startswith("cuda"):
        torch.set_num_threads(a.threads)
    clock = time.perf_counter if a.device.startswith("cuda") else time.process_time
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    torch.manual_seed(0)
    ours, ours_call = _ours(a.classes, a.channels, a.blocks)
    n_ours = count_parameters(ours)
    mult = [c // a.channels[0] for c in a.channels]
    monai, monai_call, monai_cfg = matched(lambda w, b: _monai(a.classes, w, b, mult), n_ours)
    models = {"MONAI DiffusionModelUNet 3D": (monai, monai_call, monai_cfg),
              "ours 3D": (ours, ours_call, f"channels={a.channels} blocks={a.blocks}")}
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 1, a.size, a.size, a.size, generator=g).to(dev)
    t = torch.randint(0, 1000, (a.batch,), generator=g).to(dev)
    y = torch.randint(0, a.classes + 1, (a.batch,), generator=g).to(dev)
    fns = {n: _step_fn(m.to(dev).train(), c, x, t, y, not a.fp32, a.device) for n, (m, c, _) in models.items()}
    for fn in fns.values():
        for _ in range(a.warmup):
            fn()
    sync()
    secs: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(a.repeats):  # round-robin
        for n, fn in fns.items():
            t0 = clock()
            for _ in range(a.steps):
                fn()
            sync()
            secs[n].append((clock() - t0) / a.steps)
    ratio = [m / o for o, m in zip(secs["ours 3D"], secs["MONAI DiffusionModelUNet 3D"])]
    out = {"size": a.size, "batch": a.batch, "threads": torch.get_num_threads() if a.device == "cpu" else None,
           "device": a.device, "bf16": not a.fp32,
           "clock": "wall" if a.device.startswith("cuda") else "process CPU",
           "models": {n: {"config": cfg, "parameters": count_parameters(m),
                          "volumes_per_s": round(a.batch / statistics.median(secs[n]), 3),
                          "seconds_per_step": [round(s, 3) for s in secs[n]]}
                      for n, (m, _, cfg) in models.items()},
           "ours_over_monai_per_round_median": round(statistics.median(ratio), 3)}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
