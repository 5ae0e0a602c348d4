"""The train and generate stages end to end on a tiny cohort: checkpoints, resume after a kill, a
byte-identical cohort, any GeneratorModule subclass, clear errors, and 2 processes = 1 process."""

import shutil
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, make_medmnist_npz
from synthgen.config import compose
from synthgen.stages.prepare import prepare
from synthgen.errors import ConfigError, InputError
from synthgen.models.base import GeneratorModule, seeded_noise
from synthgen.models.checkpoints import load_generator, save_generator
from synthgen.models.gan import ConditionalGAN
from synthgen.precision import native_bf16
from synthgen.runner import run_named, run_stage
from synthgen.stages.generate import NonFiniteSampleError, generate
from synthgen.stages.train import train

TINY = ["model=cgan", "model.z_dim=8", "model.g_width=8", "model.d_width=8", "model.embed_dim=4",
        "model.batch_size=8", "model.standing_stats_batches=2", "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=2", "train.num_threads=1", "generate.batch_size=8",
        "generate.per_class=5", "generate.grid_columns=4", "generate.grid_rows=1"]


def overrides(root: Path, *extra: str) -> list[str]:
    return ["data=medmnist", f"data.path={root / 'toy.npz'}", "data.classes=[a,b,c]", "data.image_size=16",
            f"paths.prepared={root / 'prepared'}", f"paths.models={root / 'models'}",
            f"paths.metrics={root / 'metrics'}", f"paths.reports={root / 'reports'}",
            f"paths.generated={root / 'generated'}", *TINY, *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stage")
    make_medmnist_npz(root / "toy.npz", n=48, size=16, channels=3)
    prepare(compose(overrides(root)))
    train(compose(overrides(root, "trainer.max_steps=8")))
    return root


def test_train_writes_checkpoints_metrics_and_curves(trained):
    m = json.loads((trained / "metrics" / "train.json").read_text())
    assert m["global_step"] == 8 and m["batches_this_run"] == 4 and m["resumed_from_step"] == 0
    assert m["target"] == "synthgen.models.gan.ConditionalGAN" and m["train_images_per_s"] > 0
    assert m["bf16_autocast"] is native_bf16("cpu")  # model.autocast=auto (conf/) records what ran
    assert (trained / "models" / "last.ckpt").is_file()
    model, meta = load_generator(trained / "models" / "generator.ckpt")
    assert isinstance(model, ConditionalGAN) and meta["class_names"] == ["a", "b", "c"]
    assert meta["image_shape"] == [3, 16, 16] and meta["name"] == "cgan"
    header = (trained / "reports" / "train_losses.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["step", "epoch"] and {"loss_d", "loss_g"} <= set(header)


def test_generate_is_byte_identical_and_regenerable(trained, tmp_path):
    out_a = generate(compose(overrides(trained, "++generate.counts.b=7")))
    first = {f: (out_a / f).read_bytes() for f in ("cohort.npz", "cohort.json")}
    out_b = generate(compose(overrides(trained, "++generate.counts.b=7")))
    assert {f: (out_b / f).read_bytes() for f in first} == first
    rec = json.loads(first["cohort.json"])
    assert rec["counts"] == {"a": 5, "b": 7, "c": 5} and rec["n"] == 17
    assert rec["model_target"] == "synthgen.models.gan.ConditionalGAN" and rec["generator"] == "cgan"
    assert rec["sampling_used"] == {"truncation": None}
    assert rec["sampling_ignored"] == ["guidance", "sampler", "steps"]
    assert len(rec["checkpoint_sha256"]) == 64 and len(rec["config_hash"]) == 64
    with np.load(out_b / "cohort.npz") as z:
        images, labels, seeds = z["images"], z["labels"], z["seeds"]
    assert images.shape == (17, 3, 16, 16) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [5, 7, 5]
    model, _ = load_generator(trained / "models" / "generator.ckpt")
    i = 9  # one sample, regenerated alone from its (label, seed)
    alone = model.generate(torch.tensor(labels[i:i + 1]), torch.tensor(seeds[i:i + 1]))
    assert np.abs(np.rint(alone.numpy()[0] * 255) - images[i].astype(float)).max() <= 1
    assert (trained / "reports" / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_checkpoint_path_and_unknown_class_are_clear(trained, tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(InputError, match="checkpoint not found") as e:
        generate(compose(overrides(trained, f"++generate.checkpoint={missing}")))
    assert str(missing) in str(e.value)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a readable torch checkpoint"):
        generate(compose(overrides(trained, f"++generate.checkpoint={junk}")))
    with pytest.raises(ConfigError, match=r"unknown class 'basofil'; valid classes are a, b, c"):
        generate(compose(overrides(trained, "++generate.counts.basofil=3")))


class ConstantGenerator(GeneratorModule):
    """A non-GAN generator: grey level = label / n_classes plus seeded noise (tests the generic path)."""

    def __init__(self, class_names, image_shape, amplitude: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.class_names, self.image_shape = list(class_names), tuple(image_shape)
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def generate(self, labels, seeds, steps: int = 1):
        base = labels.float()[:, None, None, None] / len(self.class_names)
        noise = seeded_noise(seeds, self.image_shape) * self.hparams.amplitude * steps
        return (base * self.scale + noise).clamp(0, 1).detach()


def test_any_generator_module_loads_and_generates(trained, tmp_path):
    ckpt = save_generator(tmp_path / "const.ckpt", ConstantGenerator(["a", "b", "c"], [3, 16, 16], 0.05), "k")
    out = generate(compose(overrides(trained, f"++generate.checkpoint={ckpt}",
                                     f"paths.generated={tmp_path / 'gen'}", f"paths.reports={tmp_path}")))
    rec = json.loads((out / "cohort.json").read_text())
    assert rec["model_target"].endswith("ConstantGenerator") and rec["sampling_used"] == {"steps": int(compose(()).generate.sampling.steps)}
    with np.load(out / "cohort.npz") as z:
        means = [z["images"][z["labels"] == c].mean() for c in range(3)]
    assert means[0] < means[1] < means[2]


def test_non_finite_sample_stops_generate_before_anything_is_written(trained, tmp_path, monkeypatch, capsys):
    ckpt = save_generator(tmp_path / "const.ckpt", ConstantGenerator(["a", "b", "c"], [3, 16, 16], 0.05), "k")
    gen, parts = tmp_path / "gen", tmp_path / "gen.parts"
    ov = overrides(trained, f"++generate.checkpoint={ckpt}", f"paths.generated={gen}", f"paths.reports={tmp_path}")
    honest = ConstantGenerator.generate

    def one_nan(self, labels, seeds, steps: int = 1):  # class b, k = 2 (plan row 5 + 2) diverges
        out = honest(self, labels, seeds, steps)
        out[(labels == 1) & ((seeds & 0xFFFFFF) == 2)] = float("nan")
        return out

    monkeypatch.setattr(ConstantGenerator, "generate", one_nan)
    with pytest.raises(NonFiniteSampleError) as e:
        generate(compose(ov))
    seed = (int(compose(ov).generate.seed) << 32) | (1 << 24) | 2
    msg = str(e.value)
    assert msg.startswith(f"{ckpt}: generated sample 7 (class 'b', seed {seed}) is not finite") and "\n" not in msg
    assert not gen.exists() and not parts.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["const.ckpt"]
    # the stage script: one line on stderr, exit code 2 (an InputError), still nothing written
    capsys.readouterr()
    assert run_named("generate", ov) == 2  # what pipelines/generate.py and `synthgen generate` run
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert err == [f"error: {msg}"]
    assert not gen.exists() and not parts.exists()
    # a cohort from an earlier run is left exactly as it was (every sample NaN now: counted in the message)
    monkeypatch.setattr(ConstantGenerator, "generate", honest)
    generate(compose(ov))
    before = {f.name: f.read_bytes() for f in gen.iterdir()}
    monkeypatch.setattr(ConstantGenerator, "generate", lambda self, labels, seeds, steps=1: torch.full(
        (len(labels), 3, 16, 16), float("inf")))
    with pytest.raises(NonFiniteSampleError, match=r"generated sample 0 \(class 'a', .*\(NaN/inf; 15 of 15 samples are\)"):
        generate(compose(ov))
    assert {f.name: f.read_bytes() for f in gen.iterdir()} == before and not parts.exists()


def _train_forever(ov):  # runs in a forked child; killed by the test
    train(compose([*ov, "trainer.max_steps=100000"]))


def test_resume_after_kill(tmp_path):
    make_medmnist_npz(tmp_path / "toy.npz", n=48, size=16, channels=3)
    prepare(compose(overrides(tmp_path)))
    ov = overrides(tmp_path, "train.checkpoint_every_n_batches=3")
    # A forked child (a real process, killed with SIGKILL mid-run, possibly mid-write) saves re-importing.
    child = multiprocessing.get_context("fork").Process(target=_train_forever, args=(ov,), daemon=True)
    child.start()
    last = tmp_path / "models" / "last.ckpt"
    try:
        deadline = time.time() + 240
        while not last.exists() and time.time() < deadline and child.is_alive():
            time.sleep(0.2)
        assert last.exists(), f"no checkpoint (child exit code {child.exitcode})"
        time.sleep(0.5)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    step = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"])
    assert step > 0 and step % 6 == 0  # whole batches, saved every 3 batches
    m = train(compose([*ov, f"trainer.max_steps={step + 4}"]))
    assert m["resumed_from_step"] == step and m["global_step"] == step + 4 and m["batches_this_run"] == 2
    # re-running a finished training (dvc repro after a code change) trains nothing and keeps its figures
    again = train(compose([*ov, f"trainer.max_steps={step + 4}"]))
    assert again["batches_this_run"] == 0 and again["global_step"] == step + 4
    assert {"loss_d", "loss_g"} <= set(again["final"])
    # a different model config does not resume from a foreign checkpoint
    m2 = train(compose([*ov, "model.lr_d=0.001", "trainer.max_steps=2"]))
    assert m2["resumed_from_step"] == 0 and m2["global_step"] == 2


@pytest.mark.slow
def test_two_processes_give_the_same_cohort(trained, tmp_path, one_thread):
    """Byte-identical with one thread per process in both runs (the same kernels on the same batches);
    other thread counts may pick float kernels that round differently."""
    one = generate(compose(overrides(trained, f"paths.generated={tmp_path / 'one'}", "generate.per_class=9",
                                     f"paths.reports={tmp_path / 'r1'}")))
    two_dir = tmp_path / "two"
    r = subprocess.run([sys.executable, str(REPO / "pipelines" / "generate.py"),
                        *overrides(trained, f"paths.generated={two_dir}", "generate.per_class=9",
                                   f"paths.reports={tmp_path / 'r2'}", "generate.devices=2",
                                   "generate.accelerator=cpu")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=400,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("cohort.npz", "cohort.json"):
        assert (two_dir / f).read_bytes() == (one / f).read_bytes(), f


def test_training_is_deterministic_for_a_seed(trained, tmp_path):
    ov = overrides(trained, f"paths.models={tmp_path / 'models'}", f"paths.metrics={tmp_path}",
                   f"paths.reports={tmp_path}", "trainer.max_steps=8")
    train(compose(ov))
    a, _ = load_generator(trained / "models" / "generator.ckpt")
    b, _ = load_generator(tmp_path / "models" / "generator.ckpt")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    train(compose([*ov, "seed=1", f"paths.models={tmp_path / 'other'}"]))
    c, _ = load_generator(tmp_path / "other" / "generator.ckpt")
    assert not torch.equal(c.generator_ema.fc.weight, a.generator_ema.fc.weight)


def test_rerun_past_budget_keeps_curves(trained, tmp_path):
    # DVC deletes non-persistent outputs before re-running a stage; a resumed run whose checkpoint already meets
    # the budget trains nothing but must still leave the loss curves (restored from the checkpoint) behind.
    root = tmp_path / "copy"
    shutil.copytree(trained, root)
    (root / "reports" / "train_losses.csv").unlink()
    train(compose(overrides(root, "trainer.max_steps=8")))
    rows = (root / "reports" / "train_losses.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) > 1


def test_a_damaged_resume_checkpoint_stops_training_and_another_configs_is_moved_aside(trained, tmp_path, capsys):
    """Never swallow a checkpoint: a damaged last.ckpt stops the stage with the file and the reason (exit 2,
    the file untouched); one of another config is moved aside, not overwritten."""
    import shutil

    root = tmp_path / "r"
    shutil.copytree(trained, root)
    last = root / "models" / "last.ckpt"
    original = last.read_bytes()
    last.write_bytes(original[: len(original) // 3])                     # truncated, e.g. a full disk
    damaged = last.read_bytes()
    assert run_stage(lambda argv: train(compose(overrides(root, "trainer.max_steps=10"))), []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(last) in err[0] and "cannot load the resume checkpoint" in err[0]
    assert last.read_bytes() == damaged and not list(last.parent.glob("*.bak"))

    last.write_bytes(original)                                           # a checkpoint of another config
    train(compose(overrides(root, "trainer.max_steps=4", "model.lr_g=0.001")))
    aside = last.parent / "last.1.ckpt.bak"
    assert aside.read_bytes() == original and last.read_bytes() != original


class GuidedConstant(GeneratorModule):
    """A generator whose grey level is ``guidance / 4`` (tests that each sample gets its own guidance)."""

    def __init__(self, class_names, image_shape):
        super().__init__()
        self.save_hyperparameters()
        self.class_names, self.image_shape = list(class_names), tuple(image_shape)
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def generate(self, labels, seeds, guidance: float = 1.0, steps: int = 1):
        return torch.full((len(labels), *self.image_shape), float(guidance) / 4).detach() * self.scale.detach()


def test_per_class_guidance_and_boost_candidates(trained, tmp_path):
    ckpt = save_generator(tmp_path / "guided.ckpt", GuidedConstant(["a", "b", "c"], [3, 16, 16]), "k")
    base = overrides(trained, f"++generate.checkpoint={ckpt}", f"paths.reports={tmp_path}",
                     "generate.batch_size=4", "curate.oversample=1", "curate.plan.amounts=[0.5,1]")
    out = generate(compose(base + [f"paths.generated={tmp_path / 'g'}", "++generate.sampling.guidance={a: 0.5, b: 2.0}",
                                   "curate.classes=[c]", "curate.guidance=[1.0,3.0]"]))
    rec = json.loads((out / "cohort.json").read_text())
    with np.load(out / "cohort.npz") as z:
        images, labels, guidance, cand = z["images"], z["labels"], z["guidance"], z["boost_candidate"]
    real_c = json.loads((trained / "prepared" / "meta.json").read_text())["counts"]["train"]["c"]
    assert rec["candidates"] == {"c": 2 * real_c} and rec["candidate_guidance"] == [1.0, 3.0]
    assert guidance.dtype == np.float32 and cand.dtype == bool and cand.sum() == 2 * real_c
    # c is boosted: the plan alone decides what ships of it, so no ordinary c rows are drawn
    assert rec["counts"]["c"] == 0 and len(labels) == 10 + 2 * real_c
    assert not cand[:10].any() and np.array_equal(labels[cand], np.full(2 * real_c, 2))
    assert guidance[:10].tolist() == [0.5] * 5 + [2.0] * 5                   # a, b from the map
    assert sorted(set(guidance[cand].tolist())) == [1.0, 3.0]
    # every sample was drawn with its own guidance (grey level guidance / 4)
    grey = images.reshape(len(images), -1).mean(axis=1) / 255
    assert np.abs(grey - np.minimum(guidance / 4, 1)).max() < 0.01
    # the ordinary rows of a and b are exactly those of a run without candidates
    plain = generate(compose(base + [f"paths.generated={tmp_path / 'p'}", "++generate.sampling.guidance={a: 0.5, b: 2.0}",
                                     "curate.classes=[]"]))
    with np.load(plain / "cohort.npz") as z:
        assert np.array_equal(z["seeds"][:10], np.load(out / "cohort.npz")["seeds"][:10])
        assert np.array_equal(z["images"][:10], images[:10]) and not z["boost_candidate"].any()
        assert len(z["labels"]) == 15 and (z["labels"][10:] == 2).all()
    with pytest.raises(ConfigError, match=r"generate.sampling.guidance.*unknown class 'x'"):
        generate(compose(base + ["++generate.sampling.guidance={x: 2.0}"]))


def test_gan_records_guidance_one_and_draws_one_candidate_block(trained, tmp_path):
    out = generate(compose(overrides(trained, f"paths.generated={tmp_path / 'g'}", f"paths.reports={tmp_path}",
                                     "curate.classes=[b]", "curate.oversample=1", "curate.plan.amounts=[1]")))
    with np.load(out / "cohort.npz") as z:
        assert (z["guidance"] == 1.0).all() and z["boost_candidate"].sum() == json.loads(
            (trained / "prepared" / "meta.json").read_text())["counts"]["train"]["b"]
