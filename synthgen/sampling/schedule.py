"""The cosine noise schedule (Nichol & Dhariwal 2021) and the forward process it defines.

With ``T`` training timesteps and ``f(u) = cos^2(((u + s) / (1 + s)) * pi / 2)``, ``s = 0.008``, the
discrete betas are

    beta_t = min(1 - f((t + 1) / T) / f(t / T), 0.999),      t = 0 .. T-1

and ``alpha_bar_t = prod_{k <= t} (1 - beta_k)`` (exactly diffusers' ``beta_schedule="squaredcos_cap_v2"``,
which the samplers in this package use, so training and sampling share one schedule). Write
``a_t = sqrt(alpha_bar_t)`` and ``s_t = sqrt(1 - alpha_bar_t)``. The forward process is

    x_t = a_t * x_0 + s_t * eps,     eps ~ N(0, I),      x_0 in [-1, 1]

and the network predicts either ``eps`` ("epsilon") or the velocity ``v = a_t * eps - s_t * x_0``
("v_prediction", Salimans & Ho 2022). Conversions used by the samplers and the loss:

    x_0 = a_t * x_t - s_t * v            eps = s_t * x_t + a_t * v
    x_0 = (x_t - s_t * eps) / a_t

v prediction keeps ``x_0`` well conditioned at the last timesteps, where ``a_t`` is ~5e-5 for this
schedule (the betas are capped at 0.999), which matters for few-step solvers.

Numerics (every square root, division and logarithm here, and why its argument is safe):

* ``f(t / T)`` for ``t <= T - 1`` is a squared cosine of an angle below ``pi / 2``: ``> 0``, so the ratio in
  ``beta_t`` is finite; ``f`` is decreasing, so ``beta_t >= 0``, and the cap keeps ``beta_t <= 0.999``.
  :class:`CosineSchedule` checks ``0 < beta_t < 1``, hence ``0 < alpha_bar_t < 1`` for every ``t``
  (``alpha_bar_999`` = 2.4e-9 for ``T = 1000``, ``alpha_bar_0`` = 1 - 4.1e-5).
* ``a_t = sqrt(alpha_bar_t)`` and ``s_t = sqrt(1 - alpha_bar_t)`` are taken in float64 with the arguments
  clamped to ``>= 0`` (exact arithmetic: ``> 0``), then cast to the tensor's dtype.
* ``x_0 = (x_t - s_t eps) / a_t`` (epsilon prediction) divides by ``a_t >= 4.9e-5``: finite, but it
  amplifies the noise estimate's error ~2e4 times at ``t = T - 1`` (one reason v is the default).
"""

from __future__ import annotations

import math

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction")


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """``(T,)`` float64 betas of the cosine schedule (see module docstring)."""
    def f(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    return torch.tensor([min(1 - f((t + 1) / num_timesteps) / f(t / num_timesteps), max_beta)
                         for t in range(num_timesteps)], dtype=torch.float64)


class CosineSchedule:
    """Cosine schedule with ``num_timesteps`` discrete steps and a prediction type.

    Holds only constants computed in ``__init__`` (no state changes after construction).
    """

    def __init__(self, num_timesteps: int = 1000, prediction_type: str = "v_prediction"):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.num_timesteps = int(num_timesteps)
        self.prediction_type = prediction_type
        if self.num_timesteps < 1:
            raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps!r}")
        self.betas = cosine_betas(self.num_timesteps)
        if not bool(((self.betas > 0) & (self.betas < 1)).all()):
            raise ValueError(f"cosine betas for T={self.num_timesteps} leave (0, 1): the schedule would be singular")
        #: ``(T,)`` float64 ``alpha_bar_t``, strictly decreasing in ``(0, 1)``
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def diffusers_config(self) -> dict:
        """Keyword arguments that make a diffusers scheduler use exactly this schedule."""
        return {"num_train_timesteps": self.num_timesteps, "beta_schedule": "squaredcos_cap_v2",
                "prediction_type": self.prediction_type}

    def _coeffs(self, t: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``a_t, s_t`` for integer timesteps ``t`` ``(N,)`` in ``[0, T)``, shaped ``(N, 1, 1, 1)`` like ``ref``
        (its dtype): square roots in float64 of arguments clamped to ``[0, 1]`` (see module docstring)."""
        ab = self.alphas_cumprod.to(ref.device)[t.long().to(ref.device)]
        shape = (-1,) + (1,) * (ref.dim() - 1)
        a = ab.clamp(0.0, 1.0).sqrt()
        s = (1.0 - ab).clamp(0.0, 1.0).sqrt()
        return a.to(ref.dtype).view(shape), s.to(ref.dtype).view(shape)

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t = a_t x_0 + s_t eps`` for ``x0``, ``eps`` ``(N, C, H, W)``, ``t`` ``(N,)``."""
        a, s = self._coeffs(t, x0)
        return a * x0 + s * eps

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network should output: ``eps`` or ``v = a_t eps - s_t x_0``."""
        if self.prediction_type == "epsilon":
            return eps
        a, s = self._coeffs(t, x0)
        return a * eps - s * x0

    def predict_eps(self, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise estimate implied by the network ``output`` at ``x_t``."""
        if self.prediction_type == "epsilon":
            return output
        a, s = self._coeffs(t, x_t)
        return s * x_t + a * output

    def predict_x0(self, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean-image estimate implied by the network ``output`` at ``x_t``."""
        a, s = self._coeffs(t, x_t)
        if self.prediction_type == "epsilon":
            return (x_t - s * output) / a
        return a * x_t - s * output
