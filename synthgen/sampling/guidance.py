"""Classifier-free guidance (Ho & Salimans 2022).

One network is trained both conditionally (label ``y``) and unconditionally (the null label, used for a
random share of training samples). At sampling time the two predictions are mixed:

    out = out_uncond + g * (out_cond - out_uncond)

``g = 0`` is the unconditional model, ``g = 1`` the plain conditional model, ``g > 1`` trades diversity for
class fidelity. For ``g = 0`` and ``g = 1`` only the one network call that is needed runs (so ``g = 0`` *is* the
unconditional path, bit for bit, and ``g = 1`` costs one call per step); otherwise both run as one batch of
``2N``. The mix is linear, so it is the same in epsilon and in v parameterization. ``g`` must be finite:
``g = inf`` would turn every pixel where the two predictions differ into ``inf`` (and equal ones into NaN).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import ConfigError

#: ``(x (N, C, H, W), t (N,) int64, y (N,) int64) -> prediction (N, C, H, W)`` float32
ConditionalModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: ``(x (N, C, H, W), t (N,) int64) -> prediction (N, C, H, W)`` float32 (labels already bound)
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def guided_denoiser(model: ConditionalModel, labels: torch.Tensor, null_label: int, guidance: float) -> Denoiser:
    """Bind ``labels`` ``(N,)`` and the guidance scale ``guidance`` (finite, >= 0) to ``model``.

    Raises:
        ConfigError: ``guidance`` negative, NaN or infinite (naming ``generate.sampling.guidance``).
    """
    g = float(guidance)
    if not (math.isfinite(g) and g >= 0):
        raise ConfigError("generate.sampling.guidance", f"must be a finite number >= 0, got {guidance!r}")
    null = torch.full_like(labels, int(null_label))

    if g == 0.0:
        return lambda x, t: model(x, t, null)
    if g == 1.0:
        return lambda x, t: model(x, t, labels)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))
        cond, uncond = out.chunk(2)
        return uncond + g * (cond - uncond)

    return denoise
