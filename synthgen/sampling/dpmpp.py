"""DPM-Solver++(2M) (Lu et al. 2022) with diffusers' ``DPMSolverMultistepScheduler`` on our cosine schedule.

In log-SNR time ``lambda_t = log(a_t / s_t)`` the probability-flow ODE in data prediction has the exact
solution ``x_p = (s_p / s_t) x_t + a_p * int_{lambda_t}^{lambda_p} e^{lambda} x_0(lambda) dlambda``. With
``h = lambda_p - lambda_t`` and the previous step's ``h_prev``, the second-order multistep update is

    D   = (1 + 1 / (2 r)) x_0(t) - 1 / (2 r) x_0(t_prev),          r = h_prev / h
    x_p = (s_p / s_t) x_t - a_p (e^{-h} - 1) D

(first order, ``D = x_0(t)``, at the first and the last step). Deterministic: no noise is drawn after the
initial latent. ``lambda_min_clipped = -5.1`` is diffusers' recommended setting for this schedule: the
solver starts where ``lambda >= -5.1`` rather than at the capped last beta.
"""

from __future__ import annotations

import torch
from diffusers import DPMSolverMultistepScheduler

from .ddim import check_steps
from .guidance import Denoiser
from .schedule import CosineSchedule


def dpmpp_sample(denoise: Denoiser, x_T: torch.Tensor, schedule: CosineSchedule, steps: int,
                 seeds: torch.Tensor | None = None) -> torch.Tensor:
    """Integrate from ``x_T`` ``(N, C, H, W)`` to ``x_0`` in ``steps`` DPM-Solver++(2M) steps (``seeds`` unused:
    the solver is deterministic). Returns ``(N, C, H, W)`` float32, roughly ``[-1, 1]``."""
    steps = check_steps(steps, schedule)
    sched = DPMSolverMultistepScheduler(**schedule.diffusers_config(), algorithm_type="dpmsolver++",
                                        solver_order=2, lower_order_final=True, final_sigmas_type="zero",
                                        lambda_min_clipped=-5.1)
    sched.set_timesteps(steps)
    x = x_T.float()
    n = x.shape[0]
    for t in sched.timesteps.tolist():
        out = denoise(x, torch.full((n,), int(t), dtype=torch.long, device=x.device)).float()
        x = sched.step(out, int(t), x).prev_sample
    return x
