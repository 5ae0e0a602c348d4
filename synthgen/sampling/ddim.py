"""DDIM sampling (Song, Meng & Ermon 2021) with diffusers' ``DDIMScheduler`` on our cosine schedule.

From ``x_t`` and the estimates ``x_0``, ``eps`` (see :mod:`.schedule`), one step to the previous
timestep ``p`` of the sub-sequence is

    x_p = sqrt(alpha_bar_p) * x_0 + sqrt(1 - alpha_bar_p - sigma^2) * eps + sigma * z,
    sigma = eta * sqrt((1 - alpha_bar_p) / (1 - alpha_bar_t)) * sqrt(1 - alpha_bar_t / alpha_bar_p)

``eta = 0`` is the deterministic probability-flow sampler; ``eta = 1`` is DDPM's ancestral sampler (see
:mod:`.ddpm`). Timesteps use "trailing" spacing (the first step starts at ``t = T - 1``, the pure-noise
end, as recommended by Lin et al. 2024); the final step goes to ``alpha_bar = 1``. The noise ``z`` of step
``k`` for sample ``i`` is ``seeded_noise(seeds, ..., stream=k + 1)`` (stream 0 is the initial latent), so a
sample depends only on its own seed. No ``x_0`` clipping: all samplers here solve the same equation.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from ..models.base import seeded_noise
from .guidance import Denoiser
from .schedule import CosineSchedule


def check_steps(steps: int, schedule: CosineSchedule) -> int:
    steps = int(steps)
    if not 1 <= steps <= schedule.num_timesteps:
        raise ValueError(f"steps must be in [1, {schedule.num_timesteps}], got {steps}")
    return steps


def ddim_sample(denoise: Denoiser, x_T: torch.Tensor, schedule: CosineSchedule, steps: int,
                seeds: torch.Tensor | None = None, eta: float = 0.0) -> torch.Tensor:
    """Integrate from ``x_T`` ``(N, C, H, W)`` (standard normal) to ``x_0`` in ``steps`` DDIM steps.

    ``seeds`` ``(N,)`` are needed only for ``eta > 0``. Returns ``(N, C, H, W)`` float32, roughly ``[-1, 1]``.
    """
    steps = check_steps(steps, schedule)
    if eta > 0 and seeds is None:
        raise ValueError("ddim with eta > 0 needs per-sample seeds")
    sched = DDIMScheduler(**schedule.diffusers_config(), clip_sample=False, set_alpha_to_one=True,
                          timestep_spacing="trailing")
    sched.set_timesteps(steps)
    x = x_T.float()
    n = x.shape[0]
    for k, t in enumerate(sched.timesteps.tolist()):
        out = denoise(x, torch.full((n,), int(t), dtype=torch.long, device=x.device)).float()
        noise = seeded_noise(seeds, x.shape[1:], device=x.device, stream=k + 1) if eta > 0 else None
        x = sched.step(out, int(t), x, eta=float(eta), variance_noise=noise).prev_sample
    return x
