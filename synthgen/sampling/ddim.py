"""DDIM sampling (Song, Meng & Ermon 2021) on our cosine schedule.

From ``x_t`` and the estimates ``x_0``, ``eps`` (see :mod:`.schedule`), one step to the previous
timestep ``p`` of the sub-sequence is

    x_p = sqrt(alpha_bar_p) * x_0 + sqrt(1 - alpha_bar_p - sigma^2) * eps + sigma * z,
    sigma^2 = eta^2 * (1 - alpha_bar_p) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_p)

``eta = 0`` is the deterministic probability-flow sampler; ``eta = 1`` is DDPM's ancestral sampler (see
:mod:`.ddpm`). This is the update of diffusers' ``DDIMScheduler.step``, but with the coefficients computed
in float64 in a form that cannot go negative (:func:`ddim_coefficients`): diffusers evaluates
``(1 - alpha_bar_p - sigma^2) ** 0.5`` in float32, and at the first ancestral step (``alpha_bar_t`` =
2.4e-9 at ``t = 999``) that difference is ~1e-9 in exact arithmetic, below float32's resolution near 1; on
some CPUs it rounds to -6e-8 and every sample becomes NaN (5-step DDPM on AMD EPYC).

Timesteps use "trailing" spacing (the first step starts at ``t = T - 1``, the pure-noise end, as
recommended by Lin et al. 2024; :func:`trailing_timesteps`), and each step goes to the *next timestep of
the sub-sequence*, the last one to ``alpha_bar = 1`` (diffusers instead steps to ``t - T // steps``, which
is off the sub-sequence when ``steps`` does not divide ``T``). The noise ``z`` of step ``k`` for sample
``i`` is ``seeded_noise(seeds, ..., stream=k + 1)`` (stream 0 is the initial latent), so a sample depends
only on its own seed. No ``x_0`` clipping: all samplers here solve the same equation.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .guidance import Denoiser
from .noise import seeded_noise
from .schedule import CosineSchedule


def check_steps(steps: int, schedule: CosineSchedule, limit: int | None = None) -> int:
    """``steps`` as an int in ``[1, limit]`` (default ``limit = T``); otherwise :class:`ConfigError`
    naming ``generate.sampling.steps``."""
    limit = schedule.num_timesteps if limit is None else int(limit)
    if int(steps) != steps or not 1 <= int(steps) <= limit:
        raise ConfigError("generate.sampling.steps", f"must be an integer in [1, {limit}], got {steps!r}")
    return int(steps)


def trailing_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` decreasing timesteps ``t_k = round((steps - k) * T / steps) - 1``, ``k = 0 .. steps-1``.

    Computed in integer arithmetic (ties to even, like ``numpy.round``), so the sequence is the same on every
    machine: ``t_0 = T - 1``, strictly decreasing (consecutive exact values differ by ``T / steps >= 1``),
    and ``t_{steps-1} = round(T / steps) - 1 >= 0``. diffusers' ``np.arange(T, 0, -T / steps)`` gives the same
    values when ``steps`` divides ``T``; otherwise its float steps can round a tie the other way, or yield
    ``steps + 1`` timesteps (``steps = 61``).
    """
    out = []
    for k in range(steps):
        q, r = divmod(num_timesteps * (steps - k), steps)
        out.append(q + (2 * r > steps or (2 * r == steps and q % 2 == 1)) - 1)
    return out


def ddim_coefficients(alpha_bar_t: torch.Tensor, alpha_bar_p: torch.Tensor,
                      eta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(c_x0, c_eps, sigma)`` with ``x_p = c_x0 * x_0 + c_eps * eps + sigma * z`` (float64, any shape).

    Args:
        alpha_bar_t: ``alpha_bar`` of the current timestep, in ``(0, 1)``.
        alpha_bar_p: ``alpha_bar`` of the previous (less noisy) one, ``alpha_bar_t <= alpha_bar_p <= 1``
            (``1`` for the final step to the clean image).
        eta: ``0`` (deterministic DDIM) .. ``1`` (ancestral DDPM).

    With ``q = (1 - alpha_bar_t / alpha_bar_p) / (1 - alpha_bar_t)`` (``sigma^2 = eta^2 (1 - alpha_bar_p) q``)
    the direction coefficient squared is

        1 - alpha_bar_p - sigma^2 = (1 - alpha_bar_p) * ((1 - eta^2) + eta^2 * (1 - q)),
        1 - q = alpha_bar_t * (1 - alpha_bar_p) / (alpha_bar_p * (1 - alpha_bar_t))

    a sum of products of non-negative factors (no cancellation, unlike ``1 - alpha_bar_p - sigma^2``
    evaluated as written, which is ~1e-9 at ``alpha_bar_t`` = 2.4e-9). Every factor is ``>= 0`` in exact
    arithmetic and is clamped to ``>= 0`` (denominators to ``>= tiny``) so that rounding cannot produce a
    NaN: ``1 - alpha_bar`` and ``alpha_bar_p - alpha_bar_t`` are exact-sign differences in IEEE arithmetic,
    ``alpha_bar_p > 0`` and ``1 - alpha_bar_t > 0`` for the cosine schedule (betas in ``(0, 0.999]``).
    """
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    ab_t = torch.as_tensor(alpha_bar_t, dtype=torch.float64)
    ab_p = torch.as_tensor(alpha_bar_p, dtype=torch.float64)
    tiny = torch.finfo(torch.float64).tiny
    one_m_p = (1.0 - ab_p).clamp_min(0.0)                                    # 1 - alpha_bar_p
    one_m_t = (1.0 - ab_t).clamp_min(tiny)                                   # 1 - alpha_bar_t > 0
    ab_p_pos = ab_p.clamp_min(tiny)                                          # alpha_bar_p > 0
    q = ((ab_p - ab_t).clamp_min(0.0) / (ab_p_pos * one_m_t)).clamp(0.0, 1.0)  # (1 - ab_t/ab_p)/(1 - ab_t)
    one_m_q = (ab_t.clamp_min(0.0) * one_m_p / (ab_p_pos * one_m_t)).clamp(0.0, 1.0)
    sigma = eta * (one_m_p * q).sqrt()
    c_eps = (one_m_p * ((1.0 - eta * eta) + eta * eta * one_m_q)).sqrt()
    c_x0 = ab_p.clamp(0.0, 1.0).sqrt()
    return c_x0, c_eps, sigma


def ddim_sample(denoise: Denoiser, x_T: torch.Tensor, schedule: CosineSchedule, steps: int,
                seeds: torch.Tensor | None = None, eta: float = 0.0) -> torch.Tensor:
    """Integrate from ``x_T`` ``(N, C, H, W)`` (standard normal, any float dtype) to ``x_0`` in ``steps``
    DDIM steps.

    ``seeds`` ``(N,)`` are needed only for ``eta > 0``. The state, the network output (cast to float32) and the
    update run in float32 with coefficients from :func:`ddim_coefficients`. Returns ``(N, C, H, W)``
    float32, roughly ``[-1, 1]``; finite whenever ``x_T`` and the network outputs are.
    """
    steps = check_steps(steps, schedule)
    eta = float(eta)
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta!r}")
    if eta > 0 and seeds is None:
        raise ValueError("ddim with eta > 0 needs per-sample seeds")
    timesteps = trailing_timesteps(schedule.num_timesteps, steps)
    alpha_bar = schedule.alphas_cumprod
    x = x_T.float()
    n = x.shape[0]
    for k, t in enumerate(timesteps):
        ab_p = alpha_bar[timesteps[k + 1]] if k + 1 < steps else torch.ones((), dtype=torch.float64)
        c_x0, c_eps, sigma = (float(c) for c in ddim_coefficients(alpha_bar[t], ab_p, eta))
        tt = torch.full((n,), t, dtype=torch.long, device=x.device)
        out = denoise(x, tt).float()
        x0, eps = schedule.predict_x0(x, out, tt), schedule.predict_eps(x, out, tt)
        x_prev = c_x0 * x0 + c_eps * eps
        if sigma > 0:
            x_prev = x_prev + sigma * seeded_noise(seeds, x.shape[1:], device=x.device, stream=k + 1)
        x = x_prev
    return x
