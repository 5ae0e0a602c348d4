"""Numerical edge cases of the samplers on the real cosine schedule (T = 1000): every timestep pair, 1 and
1000 steps, float32 and bf16 inputs. Assertions are about finiteness and float64 identities, never about
one CPU's float32/bf16 rounding."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from synthgen.errors import ConfigError
from synthgen.models.base import seeded_noise
from synthgen.models.diffusion import DiffusionModule
from synthgen.sampling import (CosineSchedule, ddim_coefficients, ddim_sample, ddpm_sample, dpmpp_max_steps,
                               dpmpp_sample, guided_denoiser, trailing_timesteps)
from synthgen.sampling.ddim import check_steps

T = 1000
SHAPE = (1, 4, 4)


@pytest.fixture(scope="module")
def schedule() -> CosineSchedule:
    return CosineSchedule(T)


def all_pairs(schedule: CosineSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """``alpha_bar_t, alpha_bar_p`` for every ``0 <= p < t < T`` plus ``p = -1`` (``alpha_bar = 1``)."""
    ab = schedule.alphas_cumprod
    ab_ext = torch.cat([torch.ones(1, dtype=torch.float64), ab])  # index p + 1
    t, p = torch.tril_indices(T, T + 1, offset=0)  # p + 1 <= t  <=>  p < t, p from -1
    return ab[t], ab_ext[p]


def test_schedule_is_strictly_inside_zero_one(schedule):
    ab = schedule.alphas_cumprod
    assert ab.dtype == torch.float64 and (ab > 0).all() and (ab < 1).all() and (ab.diff() < 0).all()
    assert 2e-9 < ab[-1] < 3e-9  # why the first ancestral step is delicate (see ddim_coefficients)
    x = torch.randn(3, *SHAPE).bfloat16()
    a, s = schedule._coeffs(torch.tensor([0, 500, 999]), x)
    assert a.dtype == torch.bfloat16 and torch.isfinite(a).all() and (a > 0).all() and (s > 0).all()
    with pytest.raises(ValueError, match="num_timesteps must be >= 1"):
        CosineSchedule(0)


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_ddim_coefficients_every_timestep_pair(schedule, eta):
    """All ~500k (t, p) pairs: finite, non-negative, and the float64 identities of the update hold."""
    ab_t, ab_p = all_pairs(schedule)
    assert len(ab_t) == T * (T + 1) // 2
    c_x0, c_eps, sigma = ddim_coefficients(ab_t, ab_p, eta)
    for c in (c_x0, c_eps, sigma):
        assert c.dtype == torch.float64 and torch.isfinite(c).all() and (c >= 0).all()
    # the marginal variance is preserved: c_eps^2 + sigma^2 = 1 - alpha_bar_p
    torch.testing.assert_close(c_eps ** 2 + sigma ** 2, 1 - ab_p, atol=1e-15, rtol=1e-12)
    torch.testing.assert_close(c_x0, ab_p.sqrt(), atol=0, rtol=1e-15)
    sigma2 = eta ** 2 * (1 - ab_p) / (1 - ab_t) * (1 - ab_t / ab_p)  # the textbook form
    torch.testing.assert_close(sigma ** 2, sigma2, atol=1e-15, rtol=1e-12)
    last = ab_p == 1  # the final step lands on the clean estimate, without noise
    assert (sigma[last] == 0).all() and (c_eps[last] == 0).all() and (c_x0[last] == 1).all()


def test_ancestral_coefficients_are_ddpm_posterior_and_positive_where_float32_cannot_tell(schedule):
    ab = schedule.alphas_cumprod
    betas = schedule.betas
    c_x0, c_eps, sigma = ddim_coefficients(ab[1:], ab[:-1], 1.0)  # p = t - 1
    torch.testing.assert_close(sigma ** 2, (1 - ab[:-1]) / (1 - ab[1:]) * betas[1:], atol=0, rtol=1e-9)
    # 5-step trailing DDPM, first step 999 -> 799: 1 - alpha_bar_p - sigma^2 is ~1e-9 exactly, under half an
    # ulp of 1 in float32 (6e-8), so float32 evaluated as written may round it either way (NaN on AMD EPYC);
    # the cancellation-free form keeps it positive.
    _, c_eps, _ = ddim_coefficients(ab[999], ab[799], 1.0)
    assert 0 < c_eps ** 2 < 2 ** -24


def test_trailing_timesteps_for_every_step_count():
    from fractions import Fraction

    for steps in range(1, T + 1):
        ts = trailing_timesteps(T, steps)
        assert len(ts) == steps and ts[0] == T - 1 and ts[-1] >= 0
        assert all(a > b for a, b in zip(ts, ts[1:]))
        if steps % 7 == 0 or steps < 20:  # the definition, in exact rationals (Python's round: ties to even)
            assert ts == [round(Fraction(T * (steps - k), steps)) - 1 for k in range(steps)]
    # diffusers' "trailing" spacing, where its float arange is exact (step counts dividing T)
    ref = DDIMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing")
    for steps in (1, 2, 4, 5, 8, 10, 20, 25, 50, 100, 125, 200, 250, 500, 1000):
        ref.set_timesteps(steps)
        assert ref.timesteps.tolist() == trailing_timesteps(T, steps), steps


@pytest.mark.parametrize("steps", [1, 2, 4, 10, 1000])
def test_deterministic_ddim_matches_diffusers(schedule, steps):
    """eta = 0 (where diffusers' float32 arithmetic is safe): our step is DDIMScheduler's update."""
    x_T = seeded_noise(torch.arange(2), SHAPE)

    def fake(x, t):
        return 0.5 * torch.tanh(x) + 1e-4 * t.float()[:, None, None, None]

    ours = ddim_sample(fake, x_T, schedule, steps)
    ref = DDIMScheduler(**schedule.diffusers_config(), clip_sample=False, set_alpha_to_one=True,
                        timestep_spacing="trailing")
    ref.set_timesteps(steps)
    x = x_T.clone()
    for t in ref.timesteps.tolist():
        x = ref.step(fake(x, torch.full((2,), t)), t, x, eta=0.0).prev_sample
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=0)


def _denoiser(dtype: torch.dtype):
    """A smooth stand-in for a model whose output comes back in ``dtype`` (bf16 as under autocast)."""
    def fake(x, t):
        return (0.7 * torch.tanh(x) - 0.2 * x + 1e-4 * t.float()[:, None, None, None]).to(dtype)
    return fake


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bf16"])
@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp"])
def test_samplers_are_finite_at_edge_step_counts(sampler, prediction_type, dtype):
    s = CosineSchedule(T, prediction_type=prediction_type)
    seeds = torch.arange(3) + 11
    x_T = seeded_noise(seeds, SHAPE, dtype=dtype)
    fn = {"ddpm": ddpm_sample, "ddim": ddim_sample, "dpmpp": dpmpp_sample}[sampler]
    top = dpmpp_max_steps(s) if sampler == "dpmpp" else T
    for steps in (1, 2, 3, 5, 7, 10, top):
        out = fn(_denoiser(dtype), x_T, s, steps, seeds)
        assert out.dtype == torch.float32 and out.shape == x_T.shape
        assert torch.isfinite(out).all(), (sampler, prediction_type, steps)


def test_tiny_model_ddpm_is_finite_for_every_small_step_count():
    """The real network under bf16 autocast and in float32 (the 5-step case was all NaN on AMD EPYC)."""
    torch.manual_seed(0)
    m = DiffusionModule(["a", "b"], SHAPE, channels=[8, 16], blocks_per_level=1)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # zero-initialized output layers would make every prediction 0
        for p in m.ema_net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    labels, seeds = torch.tensor([0, 1, 0, 1]), torch.arange(4)
    for autocast in (True, False):
        m.hparams.autocast = autocast
        for steps in range(1, 13):
            out = m.generate(labels, seeds, sampler="ddpm", steps=steps, guidance=2.0)
            assert torch.isfinite(out).all() and out.std() > 0, (autocast, steps)


def test_dpmpp_refuses_step_counts_with_coinciding_timesteps(schedule):
    top = dpmpp_max_steps(schedule)
    assert top == 995
    # one more step would repeat a timestep in diffusers' schedule: h = 0 and r = h_prev / h is not finite
    ref = DPMSolverMultistepScheduler(**schedule.diffusers_config(), algorithm_type="dpmsolver++",
                                      final_sigmas_type="zero", lambda_min_clipped=-5.1)
    ref.set_timesteps(top + 1)
    assert len(set(ref.timesteps.tolist())) < top + 1
    fake = _denoiser(torch.float32)
    with pytest.raises(ConfigError, match=r"generate.sampling.steps: must be an integer in \[1, 995\], got 996"):
        dpmpp_sample(fake, torch.zeros(1, *SHAPE), schedule, top + 1)


def test_steps_eta_and_guidance_are_validated(schedule):
    for bad in (0, T + 1, 2.5):
        with pytest.raises(ConfigError, match="generate.sampling.steps"):
            check_steps(bad, schedule)
    assert check_steps(T, schedule) == T and check_steps(4.0, schedule) == 4
    with pytest.raises(ValueError, match="eta must be in"):
        ddim_sample(_denoiser(torch.float32), torch.zeros(1, *SHAPE), schedule, 2, torch.arange(1), eta=1.5)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="generate.sampling.guidance: must be a finite number >= 0"):
            guided_denoiser(lambda x, t, y: x, torch.tensor([0]), 1, bad)


def test_generate_keeps_non_finite_samples_visible(monkeypatch):
    """A sampler result with inf (clamp alone would turn it into 1) or NaN comes back NaN in that row only."""
    import synthgen.models.diffusion as diffusion

    def broken(denoise, x_T, schedule, steps, seeds):
        x = torch.zeros_like(x_T)
        x[1, 0, 0, 0], x[2, 0, 1, 1] = float("inf"), float("nan")
        return x

    monkeypatch.setattr(diffusion, "get_sampler", lambda name: broken)
    m = DiffusionModule(["a", "b"], SHAPE, channels=[8, 16], blocks_per_level=1)
    out = m.generate(torch.tensor([0, 1, 0]), torch.arange(3))
    assert torch.isfinite(out[0]).all() and (out[0] == 0.5).all()
    assert torch.isnan(out[1, 0, 0, 0]) and torch.isnan(out[2, 0, 1, 1])
    assert int(torch.isnan(out).sum()) == 2
