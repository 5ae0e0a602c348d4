"""Share of finite samples per sampler on a tiny random diffusion model, over many step counts.

    OMP_NUM_THREADS=1 python -m benchmarks.sampler_finiteness [--n 48] [--max-steps 25] [--no-autocast]

A diagnostic, not a timing: a sampler whose arithmetic takes a square root of a rounded-negative number
(or divides by a rounded zero) returns NaN for every sample at the affected step counts; which counts are
affected depends on the CPU's float rounding. The model is untrained with randomized weights (its output
layers are zero-initialized otherwise), so the figures say nothing about image quality.
"""

from __future__ import annotations

import argparse
import json

import torch

from synthgen.models.diffusion import DiffusionModule


def tiny_random_model(autocast: bool) -> DiffusionModule:
    """A 3-class ``(1, 8, 8)`` model with seeded random weights (the same one for every run)."""
    torch.manual_seed(0)
    m = DiffusionModule(["a", "b", "c"], (1, 8, 8), channels=[16, 32], blocks_per_level=1, autocast=autocast)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        m.ema_net.load_state_dict(m.net.state_dict())
    return m


def finite_share(m: DiffusionModule, sampler: str, steps: range, n: int) -> dict:
    """Finite samples / all samples over ``steps`` step counts, and the step counts with any non-finite one."""
    labels, seeds = torch.arange(n) % 3, torch.arange(n)
    finite = total = 0
    bad = []
    for k in steps:
        ok = torch.isfinite(m.generate(labels, seeds, sampler=sampler, steps=k, guidance=2.0)).flatten(1).all(1)
        finite, total = finite + int(ok.sum()), total + n
        if not ok.all():
            bad.append(k)
    return {"finite": finite, "total": total, "share": round(finite / total, 4), "bad_steps": bad}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="samples per step count")
    ap.add_argument("--max-steps", type=int, default=25, help="step counts 1..max")
    ap.add_argument("--no-autocast", action="store_true", help="network in float32 instead of bf16 autocast")
    a = ap.parse_args()
    m = tiny_random_model(autocast=not a.no_autocast)
    out = {s: finite_share(m, s, range(1, a.max_steps + 1), a.n) for s in ("ddpm", "ddim", "dpmpp")}
    print(json.dumps({"autocast": not a.no_autocast, **out}, indent=1))


if __name__ == "__main__":
    main()
