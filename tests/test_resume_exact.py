"""Resume is exact: a training SIGKILLed mid-epoch and run again (what ``dvc repro train`` does) ends with the
weights of an uninterrupted run, byte for byte, for both models.

Each model's test runs ``pipelines/train.py`` three times as a real subprocess on a tiny cohort (one thread):
uninterrupted; killed with SIGKILL right after its first resume checkpoint appears (which lands mid-epoch, on
shuffled data); and the same command again, which resumes and finishes. Same machine, same code path, so the
hashes of the final raw and EMA weights must be equal. The data order, diffusion noise/timesteps/label
dropout, UNet dropout, GAN latents and DiffAugment draws all have to come back for that to hold.
"""

from __future__ import annotations

import hashlib
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
from synthgen.io import sha256_file

BATCH = 8
EVERY = 3  # batches between resume checkpoints: 3, 6, 9, ... are all mid-epoch up to 21
DATA = ["data=medmnist", "data.classes=[a,b,c]", "data.image_size=16"]
COMMON = [f"model.batch_size={BATCH}", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=2",
          "trainer.limit_val_batches=1", "train.num_threads=1", f"train.checkpoint_every_n_batches={EVERY}"]
MODELS = {
    # GAN: latents, DiffAugment (all three policies) and the mode-seeking pairs; 2 optimizer steps per batch.
    "cgan": (["model=cgan", "model.z_dim=8", "model.g_width=8", "model.d_width=8", "model.embed_dim=4",
              "model.standing_stats_batches=2", "model.diffaugment='color,translation,cutout'",
              "model.autocast=false"], 2),
    # Diffusion: timesteps, noise, label dropout, and UNet dropout (drawn from torch's global RNG).
    "ddpm": (["model=ddpm", "model.channels=[8,16]", "model.warmup_steps=5", "model.num_timesteps=100",
              "model.dropout=0.1", "model.label_dropout=0.2", "model.autocast=false"], 1),
    # Diffusion with tempered class-balanced sampling: the class and image draws of the sampler come back too.
    "ddpm-balanced": (["model=ddpm", "model.channels=[8,16]", "model.warmup_steps=5", "model.num_timesteps=100",
                       "model.label_dropout=0.2", "model.autocast=false", "train.class_balance=0.5"], 1),
}
TOTAL_BATCHES = 36


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exact")
    make_medmnist_npz(root / "toy.npz", n=60, size=16, channels=1)  # 7 batches an epoch
    prepare(compose([*DATA, f"data.path={root / 'toy.npz'}", f"paths.prepared={root / 'prepared'}"]))
    return root / "prepared"


def _cmd(prepared: Path, run: Path, model: str) -> list[str]:
    extra, steps_per_batch = MODELS[model]
    return [sys.executable, str(REPO / "pipelines" / "train.py"), *DATA, f"data.path={prepared.parent / 'toy.npz'}",
            f"paths.prepared={prepared}", f"paths.models={run / 'models'}", f"paths.metrics={run / 'metrics'}",
            f"paths.reports={run / 'reports'}", *COMMON, *extra,
            f"trainer.max_steps={TOTAL_BATCHES * steps_per_batch}"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def weights_digest(ckpt: Path) -> dict[str, str]:
    """sha256 of every tensor of a checkpoint's ``state_dict`` (raw and EMA weights, buffers), by name."""
    sd = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return {k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()[:16] for k, v in sd.items()}


def combined(digest: dict[str, str]) -> str:
    """One sha256 over all tensor digests (in name order): the figure the report quotes."""
    return hashlib.sha256("".join(f"{k}={v};" for k, v in sorted(digest.items())).encode()).hexdigest()[:16]


def _kill_after_first_checkpoint(cmd: list[str], last: Path) -> None:
    proc = subprocess.Popen(cmd, cwd=last.parent.parent, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not last.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert last.exists(), f"no checkpoint appeared (exit {proc.poll()}): {proc.stderr.read()[-2000:]}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"


@pytest.mark.parametrize("model", sorted(MODELS))
def test_sigkill_mid_epoch_then_rerun_gives_the_uninterrupted_weights(prepared, tmp_path, model):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for d in (straight, killed):
        d.mkdir()
    r = subprocess.run(_cmd(prepared, straight, model), cwd=straight, env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]

    last = killed / "models" / "last.ckpt"
    _kill_after_first_checkpoint(_cmd(prepared, killed, model), last)
    steps_per_batch = MODELS[model][1]
    batches_done = int(torch.load(last, map_location="cpu", weights_only=False)["global_step"]) // steps_per_batch
    with np.load(prepared / "train.npz") as z:
        per_epoch = len(z["labels"]) // BATCH
    assert 0 < batches_done < TOTAL_BATCHES and batches_done % per_epoch != 0, (batches_done, per_epoch)

    r = subprocess.run(_cmd(prepared, killed, model), cwd=killed, env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    digests = {name: (weights_digest(straight / "models" / name), weights_digest(killed / "models" / name))
               for name in ("last.ckpt", "generator.ckpt")}
    for name, (a, b) in digests.items():
        print(f"{model} {name}: uninterrupted {combined(a)}, killed at batch {batches_done} + resumed {combined(b)}")
    for name, (a, b) in digests.items():
        assert a.keys() == b.keys()
        differ = [k for k in a if a[k] != b[k]]
        assert not differ, f"{name}: {len(differ)} of {len(a)} tensors differ, e.g. {differ[:4]}"
    assert "not resumable" not in r.stderr, r.stderr[-3000:]
    # the sampling checkpoint (whose sha256 the generated cohort and the export record) is the same file
    assert sha256_file(straight / "models" / "generator.ckpt") == sha256_file(killed / "models" / "generator.ckpt")


def _in_process(prepared: Path, run: Path, model: str, *extra: str) -> dict:
    from synthgen.stages.train import train

    cmd = _cmd(prepared, run, model)
    return train(compose([*cmd[2:-1], *extra]))  # the stage's overrides without the step budget


def _loader_position(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["loops"]["fit_loop"]["state_dict"][
        "combined_loader"][0]


def test_max_time_budget_resumes_with_the_time_left(prepared, tmp_path, one_thread):
    """README's Resume bullet with a ``max_time`` budget: a re-run continues with the time the checkpoint
    recorded as spent (it does not start the clock again), a re-run of a spent budget trains nothing and keeps
    the checkpoint's position, and a raised budget continues the same run."""
    run = tmp_path / "timed"
    first = _in_process(prepared, run, "ddpm", "trainer.max_time=00:00:00:02", "trainer.max_steps=-1")
    last = run / "models" / "last.ckpt"
    spent = torch.load(last, map_location="cpu", weights_only=False)["callbacks"]
    timer = next(v for k, v in spent.items() if k.startswith("Timer"))["time_elapsed"]["train"]
    assert first["global_step"] > 0 and timer >= 2.0
    position = _loader_position(last)

    again = _in_process(prepared, run, "ddpm", "trainer.max_time=00:00:00:02", "trainer.max_steps=-1")
    assert again["batches_this_run"] == 0 and again["global_step"] == first["global_step"]
    assert _loader_position(last) == position

    more = _in_process(prepared, run, "ddpm", "trainer.max_time=00:00:00:05", "trainer.max_steps=-1")
    assert more["resumed_from_step"] == first["global_step"] and more["global_step"] > first["global_step"]
    # about 3 s were left; a clock started afresh would have trained for 5 s
    assert more["fit_seconds"] < 4.5, more


@pytest.mark.parametrize("budget,first,then", [("max_steps", 4, 10), ("max_epochs", 1, 2)])
def test_raising_the_budget_continues_the_same_run(prepared, tmp_path, one_thread, budget, first, then):
    """A finished run re-run with a larger budget ends where an uninterrupted run with that budget ends: from
    a stop mid-epoch (max_steps) and from an epoch end, where Lightning does not restore the loader itself."""
    other = "trainer.max_steps=-1" if budget == "max_epochs" else "trainer.max_epochs=-1"
    straight = _in_process(prepared, tmp_path / "straight", "ddpm", other, f"trainer.{budget}={then}")
    _in_process(prepared, tmp_path / "extended", "ddpm", other, f"trainer.{budget}={first}")
    extended = _in_process(prepared, tmp_path / "extended", "ddpm", other, f"trainer.{budget}={then}")
    assert extended["resumed_from_step"] > 0 and extended["global_step"] == straight["global_step"]
    assert extended["epochs"] == straight["epochs"] and extended["batches"] == straight["batches"]
    for name in ("last.ckpt", "generator.ckpt"):
        assert weights_digest(tmp_path / "straight" / "models" / name) == \
            weights_digest(tmp_path / "extended" / "models" / name), name


FINETUNE = ["train.finetune.classes=[a]", "train.finetune.steps=9", "train.class_balance=0.5"]


def test_sigkill_during_the_rare_class_finetune_then_rerun_gives_the_uninterrupted_weights(prepared, tmp_path):
    """The fine-tune (train.finetune) continues from last.ckpt and checkpoints to finetune.ckpt: killed inside
    it and run again, it ends with the uninterrupted run's weights; its learning rate is the scaled one."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    cmd = {d: _cmd(prepared, d, "ddpm-balanced") + FINETUNE for d in (straight, killed)}
    for d in (straight, killed):
        d.mkdir()
    r = subprocess.run(cmd[straight], cwd=straight, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ft = killed / "models" / "finetune.ckpt"
    _kill_after_first_checkpoint(cmd[killed], ft)
    step = int(torch.load(ft, map_location="cpu", weights_only=False)["global_step"])
    assert TOTAL_BATCHES < step < TOTAL_BATCHES + 9, step
    r = subprocess.run(cmd[killed], cwd=killed, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("finetune.ckpt", "generator.ckpt"):
        a, b = weights_digest(straight / "models" / name), weights_digest(killed / "models" / name)
        print(f"finetune {name}: uninterrupted {combined(a)}, killed at step {step} + resumed {combined(b)}")
        assert a == b, name
    main = torch.load(straight / "models" / "last.ckpt", map_location="cpu", weights_only=False)
    done = torch.load(straight / "models" / "finetune.ckpt", map_location="cpu", weights_only=False)
    assert main["global_step"] == TOTAL_BATCHES and done["global_step"] == TOTAL_BATCHES + 9
    lr = [g["lr"] for g in main["optimizer_states"][0]["param_groups"]]
    assert [g["lr"] for g in done["optimizer_states"][0]["param_groups"]] == pytest.approx([v * 0.1 for v in lr])
    assert weights_digest(straight / "models" / "last.ckpt") != weights_digest(straight / "models" / "finetune.ckpt")
