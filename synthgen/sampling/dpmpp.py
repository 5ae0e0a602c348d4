"""DPM-Solver++(2M) (Lu et al. 2022) with diffusers' ``DPMSolverMultistepScheduler`` on our cosine schedule.

In log-SNR time ``lambda_t = log(a_t / s_t)`` the probability-flow ODE in data prediction has the exact
solution ``x_p = (s_p / s_t) x_t + a_p * int_{lambda_t}^{lambda_p} e^{lambda} x_0(lambda) dlambda``. With
``h = lambda_p - lambda_t`` and the previous step's ``h_prev``, the second-order multistep update is

    D   = (1 + 1 / (2 r)) x_0(t) - 1 / (2 r) x_0(t_prev),          r = h_prev / h
    x_p = (s_p / s_t) x_t - a_p (e^{-h} - 1) D

(first order, ``D = x_0(t)``, at the first and the last step). Deterministic: no noise is drawn after the
initial latent. ``lambda_min_clipped = -5.1`` is diffusers' recommended setting for this schedule: the
solver starts where ``lambda >= -5.1`` rather than at the capped last beta.

Numerics of diffusers' arithmetic for this configuration (audited; none depends on CPU rounding):

* ``sigma = sqrt((1 - alpha_bar) / alpha_bar)``, ``a = 1 / sqrt(sigma^2 + 1)``, ``log a``, ``log s``: all
  arguments are positive because ``0 < alpha_bar < 1`` (:class:`.CosineSchedule` checks it).
* The last step goes to ``sigma = 0`` (``final_sigmas_type="zero"``): ``log 0 = -inf`` gives ``h = +inf``,
  ``e^{-h} = 0`` and ``x_p = 0 * x_t + a_p * x_0(t)`` with ``a_p = 1``; this step is always first order
  (diffusers forces it for ``final_sigmas_type="zero"``), so ``r = h_prev / h`` never sees the infinity.
  IEEE defines every one of these operations, so the result is finite for finite inputs on any CPU.
* ``r = h_prev / h`` divides by ``h > 0`` only if consecutive timesteps differ. The timesteps are
  ``linspace(0, L - 1, steps + 1)`` rounded, with ``L`` the timesteps where ``lambda >= -5.1`` (996 of 1000):
  for ``steps > L - 1`` two of them coincide, ``h = 0`` and every sample is NaN. :func:`dpmpp_max_steps`
  is that limit and :func:`dpmpp_sample` refuses more steps with a :class:`~synthgen.errors.ConfigError`.
"""

from __future__ import annotations

import torch
from diffusers import DPMSolverMultistepScheduler

from .ddim import check_steps
from .guidance import Denoiser
from .schedule import CosineSchedule

LAMBDA_MIN_CLIPPED = -5.1


def _scheduler(schedule: CosineSchedule) -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler(**schedule.diffusers_config(), algorithm_type="dpmsolver++",
                                       solver_order=2, lower_order_final=True, final_sigmas_type="zero",
                                       lambda_min_clipped=LAMBDA_MIN_CLIPPED)


def dpmpp_max_steps(schedule: CosineSchedule) -> int:
    """The most steps that give distinct timesteps: ``L - 1``, ``L`` = timesteps with ``lambda >= -5.1``
    (computed from the scheduler's own float32 ``lambda_t`` exactly as its ``set_timesteps`` does)."""
    lam = _scheduler(schedule).lambda_t
    clipped = int(torch.searchsorted(torch.flip(lam, [0]), LAMBDA_MIN_CLIPPED))
    return max(1, schedule.num_timesteps - clipped - 1)


def dpmpp_sample(denoise: Denoiser, x_T: torch.Tensor, schedule: CosineSchedule, steps: int,
                 seeds: torch.Tensor | None = None) -> torch.Tensor:
    """Integrate from ``x_T`` ``(N, C, H, W)`` to ``x_0`` in ``steps`` DPM-Solver++(2M) steps (``seeds`` unused:
    the solver is deterministic). Returns ``(N, C, H, W)`` float32, roughly ``[-1, 1]``.

    Raises:
        ConfigError: ``steps`` outside ``[1, dpmpp_max_steps(schedule)]`` (995 for ``T = 1000``).
    """
    steps = check_steps(steps, schedule, limit=dpmpp_max_steps(schedule))
    sched = _scheduler(schedule)
    sched.set_timesteps(steps)
    timesteps = sched.timesteps.tolist()
    if any(a <= b for a, b in zip(timesteps, timesteps[1:])):  # guards a future diffusers change
        raise RuntimeError(f"DPM-Solver++ timesteps for {steps} steps are not strictly decreasing: {timesteps}")
    x = x_T.float()
    n = x.shape[0]
    for t in timesteps:
        out = denoise(x, torch.full((n,), int(t), dtype=torch.long, device=x.device)).float()
        x = sched.step(out, int(t), x).prev_sample
    return x
