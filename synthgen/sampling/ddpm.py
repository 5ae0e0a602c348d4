"""DDPM ancestral sampling (Ho, Jain & Abbeel 2020).

Each step samples the Gaussian posterior of the forward process given the model's ``x_0`` estimate:

    x_{t-1} = mu_t(x_t, x_0) + sqrt(beta~_t) * z,     beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t
    mu_t    = sqrt(alpha_bar_{t-1}) * beta_t / (1 - alpha_bar_t) * x_0
              + sqrt(alpha_t) * (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * x_t

This is exactly DDIM with ``eta = 1`` (Song et al. 2021, sec. 4.1: with ``eta = 1`` DDIM's
``sigma_t^2 = beta~_t`` and its mean equals ``mu_t``), so we run :func:`.ddim.ddim_sample` with
``eta = 1``: with ``steps = T`` it is the original 1000-step sampler (tested against diffusers'
``DDPMScheduler`` with the same noise), with fewer steps the ancestral sampler on a sub-sequence. Unlike
``DDPMScheduler.step`` this takes the noise ``z`` explicitly, from ``seeded_noise(seeds, stream=k + 1)``.

Numerics: ``sqrt(beta~_t)`` and the direction term ``sqrt(1 - alpha_bar_{t-1} - beta~_t)`` are taken in
float64 in a cancellation-free form that is ``>= 0`` by construction (:func:`.ddim.ddim_coefficients`):
evaluated as written in float32 (diffusers' ``DDIMScheduler``), the second one is ~1e-9 at the first step
and rounded to -6e-8 on AMD EPYC, which made every 5-step sample NaN.
"""

from __future__ import annotations

import torch

from .ddim import ddim_sample
from .guidance import Denoiser
from .schedule import CosineSchedule


def ddpm_sample(denoise: Denoiser, x_T: torch.Tensor, schedule: CosineSchedule, steps: int,
                seeds: torch.Tensor) -> torch.Tensor:
    """Ancestral sampling from ``x_T`` ``(N, C, H, W)`` in ``steps`` steps; per-sample noise from ``seeds``."""
    return ddim_sample(denoise, x_T, schedule, steps, seeds=seeds, eta=1.0)
