"""The 3D path of the model and evaluation (issue 17, data.dims=3): the UNet and the classifier on volumes, the
diffusion model trained on (N, 1, 16, 16, 16) prepared volumes, generation, exact resume, curate and evaluate.

The fixture writes a prepared folder the way the contract for volumes says (``meta.json`` ``dims: 3``,
``volume_shape``, ``spacing``; ``images`` ``(N, C, D, H, W)`` uint8) without any reader: two classes of
phantom volumes, a bright ball or a bright cube at a random place and size in noise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthgen.config import compose
from synthgen.data.cohort import Cohort
from synthgen.data.prepared import class_counts, load_split, write_prepared
from synthgen.errors import ConfigError
from synthgen.metrics.classifier import Recipe, SmallResNet, embed, train_classifier
from synthgen.metrics.diversity import ms_ssim_pairs
from synthgen.models.checkpoints import load_generator
from synthgen.models.diffusion import DiffusionModule
from synthgen.models.unet import ClassConditionalUNet
from synthgen.errors import ConfigError as _ConfigError
from synthgen.stages.train import build_model, sized_model_config

S = 16
NAMES = ["ball", "cube"]
SPLITS = {"train": 24, "val": 8, "test": 16, "holdout": 8}
TINY_MODEL = ["model=ddpm", "model.presets3d={}", "model.channels=[8,16]", "model.max_batch=8", "model.num_timesteps=100",
              "model.warmup_steps=2", "model.batch_size=4", "model.autocast=false"]
TINY_RUN = ["trainer.enable_progress_bar=false", "trainer.log_every_n_steps=2", "trainer.limit_val_batches=1",
            "train.num_threads=1", "generate.per_class=3", "generate.batch_size_3d=4", "generate.sampling.steps=4",
            "generate.grid_columns=3", "generate.grid_rows=1"]
TINY_EVAL = ["evaluate.classifier.steps=4", "evaluate.classifier.volumes.batch_size=8",
             "evaluate.classifier.volumes.width=4",
             "evaluate.features.steps=4", "evaluate.utility.seeds=[0]", "evaluate.utility.arms=[trtr,tstr,trs]",
             "evaluate.fidelity.kid_subsets=2", "evaluate.fidelity.kid_subset_size=4",
             "evaluate.diversity.pairs_per_class=4", "evaluate.threads=1"]


def phantom_volumes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 1, S, S, S)`` float32 in ``[0, 1]`` and labels ``(n,)``: class 0 a ball, class 1 a cube."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(S, dtype=np.float32),) * 3, indexing="ij")
    labels = np.arange(n, dtype=np.int64) % 2
    out = np.empty((n, 1, S, S, S), np.float32)
    for i, c in enumerate(labels):
        r = rng.uniform(3, 5)
        cz, cy, cx = rng.uniform(r, S - r, 3)
        inside = (((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) <= r * r if c == 0 else
                  np.maximum.reduce([abs(z - cz), abs(y - cy), abs(x - cx)]) <= r * 0.85)
        out[i, 0] = np.clip(0.15 + 0.7 * inside + rng.normal(0, 0.05, inside.shape), 0, 1)
    return out, labels


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("vol")
    parts, seed = {}, 0
    for split, n in SPLITS.items():
        images, labels = phantom_volumes(n, seed)
        seed += 1
        ids = np.array([f"{split}-{i:03d}" for i in range(n)])
        parts[split] = Cohort(images=images, labels=labels, class_names=NAMES, patient_ids=ids, sources=ids,
                              storage_dtype="uint8", source_kind="phantom-test")
    meta = {"class_names": NAMES, "channels": 1, "dtype": "uint8", "image_size": S, "dims": 3,
            "volume_shape": [S, S, S], "spacing": [2.0, 1.5, 1.5], "patient_ids": True,
            "counts": {k: class_counts(v.labels, NAMES) for k, v in parts.items()},
            "normalization": "test phantoms in [0, 1]", "privacy_reference_split": "val",
            "rare": {"classes": [], "keep": None}, "source": {"kind": "phantom-test", "name": "test"}}
    write_prepared(root / "prepared", parts, meta)
    return root


def overrides(root, *extra):
    paths = {k: root / k for k in ("prepared", "models", "metrics", "reports", "generated", "curated", "audited")}
    return [*(f"paths.{k}={v}" for k, v in paths.items()), f"evaluate.cache_dir={root / 'cache'}",
            *TINY_MODEL, *TINY_RUN, *TINY_EVAL, *extra]


# ------------------------------------------------------------------------------------------------ units
def test_unet3d_forward_backward_shapes_and_identity_init():
    torch.manual_seed(0)
    net = ClassConditionalUNet(1, 2, (8, 16), spatial_dims=3)
    x = torch.randn(2, 1, S, 12, 20, requires_grad=True)  # any D, H, W (odd levels are resized to the skip)
    out = net(x, torch.tensor([0, 99]), torch.tensor([1, 2]))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert float(out.detach().abs().max()) == 0.0  # zero-initialized output conv: the identity UNet at step 0
    out.sum().backward()
    assert net.stem.weight.grad is None or net.stem.weight.grad.shape == (8, 1, 3, 3, 3)
    loss = torch.nn.functional.mse_loss(net(x, torch.tensor([5, 6]), torch.tensor([0, 1])), torch.ones_like(x))
    loss.backward()
    assert net.out.weight.grad.abs().sum() > 0 and net.out.weight.shape[2:] == (3, 3, 3)
    with pytest.raises(ValueError, match="spatial_dims"):
        ClassConditionalUNet(1, 2, (8,), spatial_dims=4)


def test_diffusion_module_generates_volumes_deterministically():
    torch.manual_seed(0)
    m = DiffusionModule(NAMES, [1, S, S, S], channels=[8, 16], num_timesteps=50, autocast=False)
    with torch.no_grad():  # non-zero output layer, so the samples depend on the network
        m.ema_net.out.weight.normal_(0, 0.02)
    labels, seeds = torch.tensor([0, 1, 1]), torch.tensor([7, 8, 9])
    a = m.generate(labels, seeds, sampler="dpmpp", steps=3, guidance=2.0)
    assert a.shape == (3, 1, S, S, S) and torch.isfinite(a).all() and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a[1:2], m.generate(labels[1:2], seeds[1:2], sampler="dpmpp", steps=3, guidance=2.0))
    b = m.generate(labels, seeds, sampler="ddpm", steps=3)
    assert torch.isfinite(b).all() and not torch.equal(a, b)
    err = m.denoising_error(a, labels, torch.tensor([5, 20, 40]), seeds)
    assert err.shape == (3,) and torch.isfinite(err).all()
    with pytest.raises(ConfigError, match="image_shape"):
        DiffusionModule(NAMES, [1, S, S, S, S])


def test_gan_refuses_volumes_with_a_config_error():
    with pytest.raises(ConfigError, match=r"model\._target_.*GAN is 2D only.*model=ddpm"):
        build_model(compose(["model=cgan"]).model, NAMES, (1, S, S, S))


def test_volume_presets_pick_the_smallest_edge_that_fits():
    cfg = compose(["model=ddpm"]).model
    p32, p64 = (sized_model_config(cfg, (1, e, e, e)) for e in (32, 48))
    assert p32["channels"] == list(cfg.presets3d["32"].channels) and p32["batch_size"] == cfg.presets3d["32"].batch_size
    assert p64["channels"] == list(cfg.presets3d["64"].channels)
    assert sized_model_config(cfg, (1, 28, 28))["channels"] == list(cfg.presets["28"].channels)  # 2D: its own table
    with pytest.raises(_ConfigError, match="model.presets3d"):  # larger than every row: no recipe was sized for it
        sized_model_config(cfg, (1, 128, 128, 128))
    mine = sized_model_config(compose(["model=ddpm", "model.presets3d={}", "model.channels=[8,16]",
                                       "model.batch_size=2"]).model, (1, 32, 32, 32))
    assert mine["channels"] == [8, 16] and mine["batch_size"] == 2


def test_classifier_on_volumes_is_3d_finite_and_seeded():
    x, y = phantom_volumes(32, 5)
    recipe = Recipe(width=4, stages=2, steps=25, batch_size=8, lr=5e-3, bf16=False)
    model = train_classifier(torch.from_numpy(x), y, None, 2, recipe, seed=0)
    assert isinstance(model.stem[0], torch.nn.Conv3d) and model.spatial_dims == 3
    xt, yt = phantom_volumes(16, 6)
    logits = model(torch.from_numpy(xt))
    assert logits.shape == (16, 2)
    feats = embed(model, torch.from_numpy(xt))
    assert feats.shape == (16, model.feature_dim) and np.isfinite(feats).all()
    again = train_classifier(torch.from_numpy(x), y, None, 2, recipe, seed=0)
    assert np.array_equal(embed(again, torch.from_numpy(xt)), feats)  # same process, same code path
    # bf16 autocast made the 3D network's gradients non-finite within two steps (AMD EPYC): volumes run float32
    default = train_classifier(torch.from_numpy(x[:24]), y[:24], None, 2, Recipe(width=4, steps=4, batch_size=8), 0)
    assert np.isfinite(embed(default, torch.from_numpy(xt))).all()
    with pytest.raises(ConfigError, match="data.symmetries"):
        train_classifier(torch.from_numpy(x), y, None, 2, Recipe(width=4, stages=2, steps=1, batch_size=4,
                                                                 symmetries=("hflip",)), seed=0)


def test_classifier_recipe_takes_the_volume_keys_for_volumes():
    c = compose(()).evaluate.classifier
    flat = Recipe.from_config(c, image_shape=(1, 32, 32))
    vol = Recipe.from_config(c, image_shape=(1, 32, 32, 32), steps=7)
    assert (flat.width, flat.batch_size) != (vol.width, vol.batch_size)
    assert (vol.width, vol.batch_size, vol.stages) == (c.volumes.width, c.volumes.batch_size, c.volumes.stages)
    assert vol.steps == 7


def test_ms_ssim_on_volumes_orders_similarity():
    x, _ = phantom_volumes(4, 9)
    a = torch.from_numpy(x)
    same = ms_ssim_pairs(a, a)
    near = ms_ssim_pairs(a, (a * 0.9 + 0.05).clamp(0, 1))
    far = ms_ssim_pairs(a, torch.from_numpy(phantom_volumes(4, 10)[0]))
    assert np.allclose(same, 1.0, atol=1e-4) and (near > far).all()


# ------------------------------------------------------------------------------------------------ stages
@pytest.fixture(scope="module")
def trained(project):
    from synthgen.stages.train import train

    m = train(compose(overrides(project, "trainer.max_steps=6")))
    return project, m


def test_train_on_volumes_then_generate_volumes(trained):
    from synthgen.stages.generate import generate

    root, m = trained
    assert m["global_step"] == 6 and m["batches"] == 6
    model, meta = load_generator(root / "models" / "generator.ckpt")
    assert meta["image_shape"] == [1, S, S, S] and isinstance(model.ema_net.stem, torch.nn.Conv3d)
    out = generate(compose(overrides(root)))
    with np.load(out / "cohort.npz") as z:
        images, labels, seeds = z["images"], z["labels"], z["seeds"]
    assert images.shape == (6, 1, S, S, S) and images.dtype == np.uint8
    assert json.loads((out / "cohort.json").read_text())["image_shape"] == [1, S, S, S]
    first = (out / "cohort.npz").read_bytes()
    assert generate(compose(overrides(root))).joinpath("cohort.npz").read_bytes() == first  # seeded
    alone = model.generate(torch.tensor(labels[4:5]), torch.tensor(seeds[4:5]), sampler="dpmpp", steps=4)
    assert np.abs(np.rint(alone.numpy()[0] * 255) - images[4].astype(float)).max() <= 1
    assert (root / "reports" / "samples.png").read_bytes()[:4] == b"\x89PNG"


def _weights(path):
    sd = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return {k: v.clone() for k, v in sd.items()}


def test_exact_resume_on_volumes(project, tmp_path):
    """4 steps, then the budget raised to 7 (resumes mid-epoch from last.ckpt) = 7 steps straight, bit for bit."""
    from synthgen.stages.train import train

    def run(name, steps):
        return train(compose(overrides(project, f"paths.models={tmp_path / name}", f"paths.metrics={tmp_path / name}",
                                       f"paths.reports={tmp_path / name}", f"trainer.max_steps={steps}")))

    straight = run("straight", 7)
    run("extended", 4)
    extended = run("extended", 7)
    assert extended["resumed_from_step"] == 4 and extended["global_step"] == straight["global_step"] == 7
    a, b = _weights(tmp_path / "straight" / "last.ckpt"), _weights(tmp_path / "extended" / "last.ckpt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_curate_and_evaluate_on_volumes(trained):
    from synthgen.stages.curate import curate
    from synthgen.stages.evaluate import run
    from synthgen.stages.generate import generate

    root, _ = trained
    generate(compose(overrides(root, "generate.per_class=4")))
    loose = ["curate.filter.min_confidence=0.0", "curate.filter.max_realism=null",
             "curate.filter.near_duplicate=null"]
    summary = curate(compose(overrides(root, *loose)))
    assert summary["n_in"] == 8 and summary["n_shipped"] == 8
    with np.load(root / "curated" / "cohort.npz") as z:
        assert z["images"].shape == (8, 1, S, S, S) and np.isfinite(z["curate_confidence"]).all()
    out = run(compose(overrides(root, f"evaluate.cohort={root / 'curated' / 'cohort.npz'}")))
    m = json.loads(out.read_text())
    for arm in ("trtr", "tstr", "trs"):
        assert 0.0 <= m["utility"][arm]["accuracy"]["mean"] <= 1.0 and set(m["utility"][arm]["recall"]) == set(NAMES)
    assert m["fidelity"]["fd"] >= 0 and m["diversity"]["ms_ssim_real"] is not None
    assert m["n"]["synthetic"] == 8 and m["feature_extractor"]["dim"] > 0
    real = load_split(root / "prepared", "train")
    assert real.images.shape == (SPLITS["train"], 1, S, S, S)
