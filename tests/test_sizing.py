"""Size presets (issue 17): model, GAN and evaluate-classifier settings chosen from the prepared image side,
the networks build and run at 64/128 px, and the demo renders natively at 128 px."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from synthgen.config import compose
from synthgen.data.demo import DemoReader, render_size
from synthgen.data.phantom import render, sample_anatomy, sample_finding, sample_view
from synthgen.errors import ConfigError
from synthgen.metrics.classifier import Recipe, SmallResNet
from synthgen.models.gan_nets import Generator, ProjectionDiscriminator
from synthgen.models.unet import ClassConditionalUNet
from synthgen.sizing import apply_presets, downsampling_stages, image_side, preset_for, privacy_encoder_stages
from synthgen.stages.train import build_model, sized_model_config

SIDES = (28, 64, 128, 256)


def _model(*overrides: str) -> dict:
    return OmegaConf.to_container(compose(list(overrides)).model, resolve=True)


@pytest.mark.parametrize("option", ["ddpm", "cgan"])
def test_each_side_gets_its_own_row_and_between_sides_the_next_larger(option):
    cfg = _model(f"model={option}")
    rows = {int(k): v for k, v in cfg["presets"].items()}
    assert sorted(rows) == list(SIDES)
    for side in SIDES:
        sized = sized_model_config(cfg, (1, side, side))
        assert "presets" not in sized
        assert {k: sized[k] for k in rows[side]} == rows[side]
    assert sized_model_config(cfg, (1, 100, 100))["batch_size"] == rows[128]["batch_size"]
    assert sized_model_config(cfg, (3, 16, 16))["batch_size"] == rows[28]["batch_size"]
    assert sized_model_config(cfg, (1, 64, 96)) == sized_model_config(cfg, (1, 128, 128))  # the larger side
    # bigger images, smaller batches: the per-step cost stays bounded
    batches = [rows[s]["batch_size"] for s in SIDES]
    assert batches == sorted(batches, reverse=True) and batches[0] > batches[-1]


def test_explicit_values_win_over_the_preset():
    cfg = _model("model.batch_size=7", "model.channels=[8,16,16,16,16]")
    sized = sized_model_config(cfg, (1, 128, 128))
    assert sized["batch_size"] == 7 and sized["channels"] == [8, 16, 16, 16, 16]
    assert sized["blocks_per_level"] == cfg["presets"]["128"]["blocks_per_level"]
    # a table row the user adds on the command line is used for its side
    row = "{batch_size: 4, channels: [8, 8, 8, 8, 8, 8, 8], blocks_per_level: 1, max_batch: 8}"
    cfg = _model(f"+model.presets.512={row}")
    assert sized_model_config(cfg, (1, 512, 512))["batch_size"] == 4


def test_too_large_an_image_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"model\.presets: no preset for 300 px images \(largest is 256 px\)"):
        sized_model_config(_model(), (1, 300, 300))
    with pytest.raises(ConfigError) as e:
        Recipe.from_config(compose([]).evaluate.classifier, image_shape=(1, 512, 512))
    assert "evaluate.classifier.presets" in str(e.value) and "\n" not in str(e.value)  # runner: exit 2
    # a row that leaves a null key unset, and a row naming an unknown key
    cfg = _model()
    cfg["presets"]["64"] = {"batch_size": 8}
    with pytest.raises(ConfigError, match=r"model\.(blocks_per_level|channels|max_batch): null and not given by"):
        sized_model_config(cfg, (1, 64, 64))
    with pytest.raises(ConfigError, match=r"model\.presets\.64\.chanels: not a key"):
        apply_presets({"channels": None, "presets": {"64": {"chanels": 1}}}, 64, "model.presets")
    with pytest.raises(ConfigError, match="preset sides must be integers"):
        preset_for({"big": {}}, 64, "model.presets")


def test_classifier_stages_follow_the_side_and_the_privacy_rule():
    ecfg = compose([]).evaluate.classifier
    for side in SIDES:
        rec = Recipe.from_config(ecfg, image_shape=(1, side, side))
        assert rec.stages == downsampling_stages(side) == privacy_encoder_stages((1, side, side))
        final = side
        for _ in range(rec.stages):
            final = (final + 1) // 2
        assert 3 <= final <= 5, (side, final)  # the last map stays ~4 px
    # 28 px: the recipe as before (the demo budget's 100 steps aside)
    assert Recipe.from_config(ecfg, image_shape=(1, 28, 28), steps=300) == Recipe()
    assert Recipe.from_config(ecfg, image_shape=(1, 128, 128), width=4).width == 4  # explicit wins
    with pytest.raises(ConfigError, match=r"evaluate\.classifier\.(batch_size|shift|stages|width): null"):
        Recipe.from_config(ecfg)  # no image size: the null keys cannot be filled
    assert image_side((1, 32, 48, 40)) == 48


@pytest.mark.parametrize("side", [64, 128])
def test_networks_build_and_run_at_size(side):
    torch.manual_seed(0)
    x = torch.rand(2, 1, side, side)
    y = torch.tensor([0, 1])
    levels = downsampling_stages(side) + 1  # down to 7-8 px, as the presets do
    unet = ClassConditionalUNet(1, 2, channels=[4] * levels)
    out = unet(x, torch.tensor([3, 500]), y)
    assert out.shape == x.shape and torch.isfinite(out).all()

    gen = Generator(z_dim=16, n_classes=2, channels=1, side=side, width=2, embed_dim=4, hierarchical_z=True)
    img = gen(torch.randn(2, 16), y)
    assert img.shape == (2, 1, side, side) and img.abs().max() <= 1
    assert len(gen.blocks) == int(np.log2(side // 4))  # one up-block per doubling from 4 px
    assert gen.c0 == 2 * 8  # the widest block is capped at width * width_cap
    disc = ProjectionDiscriminator(n_classes=2, channels=1, side=side, width=2)
    assert disc(img, y).shape == (2,)

    net = SmallResNet(1, 3, width=4, stages=downsampling_stages(side))
    assert net(x).shape == (2, 3)


def test_gan_built_from_conf_at_128_px_samples():
    cfg = _model("model=cgan", "model.g_width=2", "model.d_width=2", "model.standing_stats_batches=1")
    model = build_model(cfg, ["a", "b"], (1, 128, 128))
    assert model.hparams.g_width == 2 and model.hparams.width_cap == cfg["width_cap"]
    out = model.generate(torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert out.shape == (2, 1, 128, 128)


def test_demo_renders_natively_at_128_px_with_visible_findings(tmp_path):
    assert render_size(None, 28) == 64 and render_size(None, 128) == 128 and render_size(None, None) == 64
    assert render_size(96, 128) == 96  # an explicit source size wins
    rng = np.random.default_rng(3)
    anatomy, view = sample_anatomy(rng), sample_view(np.random.default_rng(4))
    normal = render(anatomy, sample_finding("normal", rng), view, 128)
    nodule = render(anatomy, sample_finding("nodule", np.random.default_rng(5)), view, 128)
    assert normal.shape == (128, 128) and 0 <= normal.min() and normal.max() <= 1
    diff = nodule - normal
    # the nodule: a bright round density a few pixels wide (radius 6-10 px at 128 px), nothing elsewhere
    assert diff.max() > 0.2 and (diff > 0.1).sum() >= 40 and (np.abs(diff) > 0.05).mean() < 0.05
    # geometry scales with the side: the same nodule covers ~4x the pixels at 128 px as at 64 px
    small = render(anatomy, sample_finding("nodule", np.random.default_rng(5)), view, 64) - render(
        anatomy, sample_finding("normal", rng), view, 64)
    assert 2.5 < (diff > 0.1).sum() / max(1, (small > 0.1).sum()) < 6

    reader = DemoReader(root=str(tmp_path / "demo"), labels="labels.csv", image_size=128, classes=None,
                        window=None, patients=8, images_per_patient=1, source_size=None,
                        prevalence={"normal": 0.5, "nodule": 0.5}, seed=0, workers=1)
    cohort = reader.read()
    assert cohort.images.shape[1:] in ((128, 128), (1, 128, 128))
    import pydicom

    ds = pydicom.dcmread(next((tmp_path / "demo").rglob("*.dcm")))
    assert (ds.Rows, ds.Columns) == (128, 128)  # written at 128 px, not resized from 64
