"""Sampling: generation plans (which (label, seed) pairs a cohort holds, ``plan.py``), the noise schedule,
classifier-free guidance and samplers for the diffusion model (one concept per file).

``SAMPLERS`` maps the names accepted by ``generate.sampler`` to functions
``(denoise, x_T, schedule, steps, seeds) -> x_0``.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import ConfigError
from .ddim import ddim_coefficients, ddim_sample, trailing_timesteps
from .ddpm import ddpm_sample
from .dpmpp import dpmpp_max_steps, dpmpp_sample
from .guidance import Denoiser, guided_denoiser
from .schedule import CosineSchedule

SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"ddpm": ddpm_sample, "ddim": ddim_sample, "dpmpp": dpmpp_sample}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler called ``name``; an unknown name raises :class:`ConfigError` listing the valid ones."""
    if name not in SAMPLERS:
        raise ConfigError("generate.sampler", f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


__all__ = ["SAMPLERS", "get_sampler", "CosineSchedule", "Denoiser", "guided_denoiser",
           "ddim_sample", "ddpm_sample", "dpmpp_sample", "ddim_coefficients", "trailing_timesteps",
           "dpmpp_max_steps"]
