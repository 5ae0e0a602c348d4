"""bf16 autocast where the device has it natively (``auto``, the config default), float32 elsewhere.

An AVX2-only CPU emulates bf16 ~13x slower than float32 (``benchmarks/evaluate_classifier.py``), so ``auto``
must run float32 there, and bf16 where AVX-512-BF16/AMX make it faster. The CPU's answer is patched here both
ways, so these tests check the same thing on either kind of machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import synthgen.precision as precision
from synthgen.config import compose
from synthgen.config_rules import BF16
from synthgen.errors import ConfigError
from synthgen.metrics.classifier import Recipe, predict_proba, build_model
from synthgen.models.autoencoder import AutoencoderModule
from synthgen.models.diffusion import DiffusionModule
from synthgen.models.gan import ConditionalGAN


@pytest.fixture(params=[False, True], ids=["avx2-cpu", "bf16-cpu"])
def native(request, monkeypatch) -> bool:
    monkeypatch.setattr(precision, "_cpu_native_bf16", lambda: request.param)
    return request.param


def _dtype_inside(module: torch.nn.Module, run) -> torch.dtype:
    """dtype of the first Conv's output while ``run()`` calls ``module``."""
    seen: list[torch.dtype] = []
    conv = next(m for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)))
    handle = conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        run()
    finally:
        handle.remove()
    return seen[0]


def test_auto_follows_the_device_and_explicit_values_win(native):
    assert precision.use_bf16("auto", "cpu") is native
    assert precision.use_bf16(True, "cpu") is True and precision.use_bf16(False, "cpu") is False
    assert precision.use_bf16(np.bool_(True)) is True
    assert precision.use_bf16("auto", "mps") is False  # no native bf16 claimed for other devices


@pytest.mark.parametrize("bad", ["yes", "bf16", 1, 0.0, None, "Auto"])
def test_anything_but_true_false_auto_is_a_config_error_naming_the_key(bad):
    with pytest.raises(ConfigError, match=r"config model\.autocast: must be true, false or auto"):
        precision.bf16_setting(bad, "model.autocast")
    assert not BF16.ok(bad)
    with pytest.raises(ConfigError, match=r"model\.autocast"):
        DiffusionModule(["a"], (1, 8, 8), channels=[8, 16], autocast=bad)


def test_config_rule_takes_exactly_the_settings_the_code_takes():
    assert all(BF16.ok(v) for v in precision.BF16_SETTINGS)
    cfg = compose(())
    for value in (cfg.model.autocast, cfg.autoencoder.autocast, cfg.evaluate.classifier.bf16):
        assert value == "auto"  # the YAML default


def test_generators_run_float32_on_a_cpu_without_native_bf16(native):
    torch.manual_seed(0)
    want = torch.bfloat16 if native else torch.float32
    ddpm = DiffusionModule(["a", "b"], (1, 8, 8), channels=[8, 16], autocast="auto")
    x, t, y = torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)
    assert _dtype_inside(ddpm.net, lambda: ddpm(x, t, y)) == want
    assert ddpm(x, t, y).dtype == torch.float32  # the output is float32 either way
    forced = DiffusionModule(["a", "b"], (1, 8, 8), channels=[8, 16], autocast=True)
    assert _dtype_inside(forced.net, lambda: forced(x, t, y)) == torch.bfloat16  # true means true

    gan = ConditionalGAN(["a", "b"], (1, 16, 16), z_dim=8, g_width=8, d_width=8, embed_dim=4, autocast="auto")
    assert gan.hparams.autocast == "auto"  # kept unresolved: a checkpoint resolves on the machine that loads it

    def d_step():
        with gan._autocast():
            gan.discriminator(torch.zeros(2, 1, 16, 16), torch.zeros(2, dtype=torch.long))
    assert _dtype_inside(gan.discriminator, d_step) == want

    ae = AutoencoderModule((1, 16, 16), channels=(8, 8), latent_channels=2, norm_num_groups=8, autocast="auto")
    assert _dtype_inside(ae.net, lambda: ae.encode(torch.zeros(2, 1, 16, 16))) == want


def test_classifier_recipe_resolves_auto_and_records_what_ran(native):
    assert Recipe().bf16 is native and Recipe(bf16="auto").bf16 is native
    assert Recipe(bf16=False).bf16 is False and Recipe.from_config(
        compose(()).evaluate.classifier, image_shape=(1, 28, 28)).bf16 is native
    assert Recipe().to_dict()["bf16"] is native
    model = build_model(Recipe(), 1, 2)
    x = torch.zeros(3, 1, 28, 28)
    want = torch.bfloat16 if native else torch.float32
    assert _dtype_inside(model, lambda: predict_proba(model, x, Recipe().bf16)) == want
    with pytest.raises(ConfigError, match=r"evaluate\.classifier\.bf16"):
        Recipe(bf16="fast")


def test_cpu_flags_are_read_when_torch_has_no_probe(monkeypatch, tmp_path):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    for flags, want in (("fpu avx2 fma", False), ("fpu avx2 avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(precision, "CPUINFO", info)
        precision._cpu_native_bf16.cache_clear()
        assert precision._cpu_native_bf16() is want, flags
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "absent")
    precision._cpu_native_bf16.cache_clear()
    assert precision._cpu_native_bf16() is False
    precision._cpu_native_bf16.cache_clear()
