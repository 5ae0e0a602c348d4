"""Latent diffusion on 32 px toy images with tiny widths: the autoencoder (round trip, exact resume), the
autoencoder stage (no-op marker when off, training then a cache hit when on), latent ddpm train -> generate
returning decoded images, and the config errors (exit 2)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_medmnist_npz
from synthgen.config import compose
from synthgen.models.autoencoder import AutoencoderModule, load_autoencoder
from synthgen.models.checkpoints import load_generator
from synthgen.models.latent import LatentDiffusionModule
from synthgen.runner import run_named
from synthgen.stages.autoencoder import train_autoencoder
from synthgen.stages.generate import generate
from synthgen.stages.prepare import prepare
from synthgen.stages.train import train

TINY_AE = ["autoencoder.channels=[8,16]", "autoencoder.latent_channels=2", "autoencoder.norm_num_groups=8",
           "autoencoder.batch_size=4", "autoencoder.max_steps=4"]
TINY_DDPM = ["model=ddpm", "model.channels=[8,16]", "model.batch_size=8", "model.warmup_steps=2"]
TINY_RUN = ["trainer.enable_progress_bar=false", "trainer.log_every_n_steps=2", "trainer.limit_val_batches=1",
            "train.num_threads=1", "generate.batch_size=8", "generate.per_class=2", "generate.grid_columns=2",
            "generate.grid_rows=1", "generate.sampling.steps=3"]


def overrides(root: Path, *extra: str, model: tuple[str, ...] = tuple(TINY_DDPM)) -> list[str]:
    return ["data=medmnist", f"data.path={root / 'toy.npz'}", "data.classes=[a,b,c]", "data.image_size=32",
            f"paths.prepared={root / 'prepared'}", f"paths.models={root / 'models'}",
            f"paths.autoencoder={root / 'models_ae'}", f"paths.metrics={root / 'metrics'}",
            f"paths.reports={root / 'reports'}", f"paths.generated={root / 'generated'}",
            *TINY_AE, *model, *TINY_RUN, *extra]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("latent")
    make_medmnist_npz(root / "toy.npz", n=24, size=16, channels=1)
    prepare(compose(overrides(root)))
    return root


def test_autoencoder_round_trip_shape_and_range():
    torch.manual_seed(0)
    ae = AutoencoderModule([1, 32, 32], channels=[8, 16], latent_channels=2, norm_num_groups=8).eval()
    x = torch.rand(3, 1, 32, 32)
    z = ae.encode(x)
    assert z.shape == (3, 2, 16, 16) and z.dtype == torch.float32 and ae.latent_shape == (2, 16, 16)
    rec = ae.decode(z)
    assert rec.shape == x.shape and torch.isfinite(rec).all() and rec.min() >= 0 and rec.max() <= 1
    z[1, 0, 3, 3] = float("inf")
    bad = ae.decode(z)
    assert torch.isnan(bad[1]).all() and torch.isfinite(bad[[0, 2]]).all()  # the generate stage names row 1
    ae3 = AutoencoderModule([1, 8, 16, 16], channels=[8, 16], latent_channels=2, norm_num_groups=8).eval()
    assert ae3.decode(ae3.encode(torch.rand(2, 1, 8, 16, 16))).shape == (2, 1, 8, 16, 16)  # 3D: volmodel


def test_autoencoder_stage_is_a_marker_when_off_then_trains_then_hits_the_cache(prepared):
    off = train_autoencoder(compose(overrides(prepared)))  # 32 px, model.latent null -> off
    assert off["latent"] is False and not (prepared / "models_ae" / "autoencoder.ckpt").exists()
    assert json.loads((prepared / "models_ae" / "status.json").read_text())["latent"] is False
    on = train_autoencoder(compose(overrides(prepared, "model.latent=true")))
    assert on["cache"] == "trained" and on["global_step"] == 4 and on["latent_shape"] == [2, 16, 16]
    assert on["latent_scale"] > 0 and np.isfinite(on["validation"]["psnr_db"])
    ckpt = prepared / "models_ae" / "autoencoder.ckpt"
    before = ckpt.read_bytes()
    again = train_autoencoder(compose(overrides(prepared, "model.latent=true")))
    assert again["cache"] == "hit" and ckpt.read_bytes() == before
    assert again["latent_scale"] == pytest.approx(on["latent_scale"], rel=1e-5)


def test_autoencoder_training_resumes_exactly(prepared, tmp_path):
    def run(ae_dir: Path, steps: int) -> dict:
        cfg = compose(overrides(prepared, "model.latent=true", f"paths.autoencoder={ae_dir}",
                                f"autoencoder.max_steps={steps}", "train.checkpoint_every_n_batches=1"))
        train_autoencoder(cfg)
        return load_autoencoder(ae_dir / "autoencoder.ckpt")[0].state_dict()

    straight = run(tmp_path / "straight", 4)
    run(tmp_path / "split", 2)
    resumed = run(tmp_path / "split", 4)  # the raised budget continues from models_ae/last.ckpt
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_latent_ddpm_trains_and_generates_decoded_images(prepared):
    cfg = compose(overrides(prepared, "model.latent=true", "trainer.max_steps=4"))
    train_autoencoder(cfg)
    metrics = train(cfg)
    assert metrics["target"] == "synthgen.models.latent.LatentDiffusionModule"
    assert metrics["latent"]["shape"] == [2, 16, 16] and metrics["latent"]["scale"] > 0
    model, meta = load_generator(prepared / "models" / "generator.ckpt")  # decodes by itself
    assert isinstance(model, LatentDiffusionModule) and meta["image_shape"] == [1, 32, 32]
    images = model.generate(torch.tensor([0, 2]), torch.tensor([7, 8]), steps=3)
    assert images.shape == (2, 1, 32, 32) and torch.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 1
    err = model.denoising_error(torch.rand(2, 1, 32, 32), torch.tensor([0, 1]), torch.tensor([10, 500]),
                                torch.tensor([1, 2]))  # loss-based MIA gets pixel images
    assert err.shape == (2,) and torch.isfinite(err).all()
    out = generate(cfg)
    with np.load(out / "cohort.npz") as z:
        assert z["images"].shape == (6, 1, 32, 32) and z["images"].dtype == np.uint8
    assert json.loads((out / "cohort.json").read_text())["model_target"].endswith("LatentDiffusionModule")


@pytest.mark.parametrize("model,extra,needle", [
    (("model=cgan",), ["model.latent=true"], "config model.latent: latent diffusion needs model=ddpm"),
    (TINY_DDPM, ["model.latent=true", "autoencoder.channels=[8,16,16,16]"], "not divisible by 8"),
    (TINY_DDPM, ["autoencoder.norm_num_groups=3"], "config autoencoder.norm_num_groups: 3 does not divide"),
], ids=["gan", "size", "groups"])
def test_bad_latent_config_is_one_line_exit_2(prepared, tmp_path, capsys, model, extra, needle):
    data = ["data.image_size=36"] if "not divisible by 8" in needle else []
    args = [*overrides(prepared, *extra, *data, model=tuple(model)), f"paths.autoencoder={tmp_path / 'ae'}"]
    if data:  # a prepared cohort at 36 px (36 is not divisible by f = 8)
        args += [f"paths.prepared={tmp_path / 'prepared'}"]
        prepare(compose(args))
    assert run_named("autoencoder", args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "ae" / "autoencoder.ckpt").exists()
