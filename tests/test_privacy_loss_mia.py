"""Denoising-error membership inference: in the privacy stage for diffusion cohorts, n/a for GANs, and the
attack itself separates an overfit diffusion model's members from non-members (tiny models, CPU)."""

import json

import numpy as np
import pytest
import torch

from synthgen.io import sha256_file, write_json
from synthgen.models.checkpoints import class_path, save_generator
from synthgen.models.diffusion import DiffusionModule
from synthgen.privacy.membership import denoising_error_fn, loss_attack
from synthgen.stages.privacy import main as stage_main
from test_privacy_stage import _setup


def _fit(model: DiffusionModule, images01: np.ndarray, labels: np.ndarray, steps: int, seed: int = 0) -> DiffusionModule:
    """Plain full-batch AdamW on the diffusion loss; the EMA weights (what the attack uses) = the raw ones."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.net.parameters(), lr=3e-3)
    x, y = torch.as_tensor(images01), torch.as_tensor(labels, dtype=torch.long)
    for _ in range(steps):
        t = torch.randint(0, model.schedule.num_timesteps, (len(x),), generator=g)
        loss = model.diffusion_loss(x, y, t, torch.randn(x.shape, generator=g)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.ema_net.load_state_dict(model.net.state_dict())
    return model.eval()


def _diffusion_cohort(tmp_path, ov):
    """A tiny ddpm trained a few steps on the prepared train split, saved like the train stage does, and
    recorded in cohort.json like the generate stage does."""
    from synthgen.data.prepared import load_split

    train = load_split(tmp_path / "prepared", "train", as_float=True)
    torch.manual_seed(0)
    model = DiffusionModule(["a", "b", "c"], train.images.shape[1:], channels=[8, 16], blocks_per_level=1,
                            autocast=False, label_dropout=0.0, ema_decay=0.999)
    _fit(model, train.images[:32].astype(np.float32), train.labels[:32], steps=3)
    ckpt = save_generator(tmp_path / "models" / "generator.ckpt", model, "test")
    meta_p = tmp_path / "generated" / "cohort.json"
    meta = json.loads(meta_p.read_text())
    meta.update(generator="ddpm", model_target=class_path(model), checkpoint=str(ckpt),
                checkpoint_sha256=sha256_file(ckpt))
    write_json(meta_p, meta)
    return ckpt, ov + ["privacy.mia_loss.max_samples=48", "privacy.mia_loss.timesteps=[100,400]"]


def test_stage_runs_the_loss_attack_on_a_diffusion_cohort(tmp_path, capsys):
    ov, _ = _setup(tmp_path, n_copies=0)
    ckpt, ov = _diffusion_cohort(tmp_path, ov)
    rc = stage_main(ov)
    report = json.loads((tmp_path / "reports" / "privacy_report.json").read_text())
    metrics = json.loads((tmp_path / "metrics" / "privacy.json").read_text())
    assert rc == (0 if report["passed"] else 1)
    ml = report["cohort"]["mia_loss"]
    assert ml["applicable"] and ml["attack"] == "loss" and ml["timesteps"] == [100, 400]
    # MedMNIST layout (no patient ids): the non-members are the val split, class-matched, at most 48.
    assert ml["checkpoint_sha256"] == sha256_file(ckpt) and ml["nonmembers"] == "nonmembers"
    assert 0 < ml["n_members"] == ml["n_nonmembers"] <= 48
    assert 0.0 <= metrics["mia_loss_auc"] <= 1.0 and 0.0 <= metrics["mia_loss_tpr_at_1pct_fpr"] <= 1.0
    assert metrics["mia_loss_applicable"] is True and metrics["mia_auc"] is not None   # next to the distance one
    assert {"mia_loss_auc", "mia_loss_tpr_at_1pct_fpr", "mia_auc"} <= set(report["gates"])
    # the gate uses the same limits as the distance attack, and fails the cohort when the AUC exceeds them
    assert report["gates"]["mia_loss_auc"]["limit"] == report["gates"]["mia_auc"]["limit"]
    capsys.readouterr()
    assert stage_main(ov + ["privacy.gates.mia_max_auc=0.0"]) == 1
    assert "mia_loss_auc" in capsys.readouterr().err


def test_stage_refuses_a_checkpoint_that_changed_after_generation(tmp_path, capsys):
    ov, _ = _setup(tmp_path, n_copies=0)
    ckpt, ov = _diffusion_cohort(tmp_path, ov)
    ckpt.write_bytes(ckpt.read_bytes() + b"x")
    assert stage_main(ov) == 2
    err = capsys.readouterr().err
    assert "generator.ckpt" in err and "sha256" in err


def test_gan_cohort_reports_the_loss_attack_as_not_applicable(tmp_path):
    from synthgen.models.gan import ConditionalGAN

    ov, _ = _setup(tmp_path, n_copies=0)
    meta_p = tmp_path / "generated" / "cohort.json"
    meta = json.loads(meta_p.read_text())
    meta.update(generator="cgan", model_target=f"{ConditionalGAN.__module__}.ConditionalGAN",
                checkpoint=str(tmp_path / "models" / "generator.ckpt"))   # never opened for a GAN
    write_json(meta_p, meta)
    assert stage_main(ov) == 0
    report = json.loads((tmp_path / "reports" / "privacy_report.json").read_text())
    metrics = json.loads((tmp_path / "metrics" / "privacy.json").read_text())
    assert report["cohort"]["mia_loss"]["applicable"] is False
    assert "not a diffusion model" in report["cohort"]["mia_loss"]["reason"]
    assert metrics["mia_loss_applicable"] is False and metrics["mia_loss_auc"] is None
    assert "mia_loss_auc" not in report["gates"] and "mia_auc" in report["gates"]


def _textures(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 1, 8, 8)`` smoothed random textures in [0, 1]: no shared structure a model could generalise from."""
    x = torch.as_tensor(rng.uniform(0, 1, (n, 1, 8, 8)).astype(np.float32))
    return torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1).numpy()


def test_overfit_diffusion_model_is_caught_and_non_members_are_not(one_thread):
    rng = np.random.default_rng(0)
    members, non_a, non_b = _textures(24, rng), _textures(200, rng), _textures(200, rng)
    torch.manual_seed(0)
    model = DiffusionModule(["x"], (1, 8, 8), channels=[16, 32], blocks_per_level=1, autocast=False,
                            label_dropout=0.0, ema_decay=0.999)
    _fit(model, members, np.zeros(24), steps=500)            # a few dozen images, many steps: memorised
    fn = denoising_error_fn(model, (50, 200, 500), seed=0, batch=64)
    z = np.zeros(200, np.int64)
    overfit = loss_attack(fn, members, z[:24], non_a, z)
    control = loss_attack(fn, non_b, z, non_a, z)
    assert overfit["auc"] > 0.85, overfit
    assert abs(control["auc"] - 0.5) < 0.12, control           # 4 standard errors at 200 vs 200
    assert np.array_equal(fn(non_a[:10], z[:10]), fn(non_a[:10], z[:10]))   # seeded
    assert np.allclose(fn(non_a[:10], z[:10]), denoising_error_fn(model, (50, 200, 500), 0, batch=3)(non_a[:10], z[:10]),
                       rtol=1e-5, atol=1e-7)                  # chunking does not change the noise draws


@pytest.mark.parametrize("bad", ["[1000]", "[]"])
def test_out_of_range_timesteps_are_a_config_error(tmp_path, capsys, bad):
    ov, _ = _setup(tmp_path, n_copies=0)
    _, ov = _diffusion_cohort(tmp_path, ov)
    assert stage_main(ov + [f"privacy.mia_loss.timesteps={bad}"]) == 2
    assert "privacy.mia_loss.timesteps" in capsys.readouterr().err
