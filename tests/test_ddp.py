"""``trainer=ddp_cpu``: two CPU processes (gloo) train as one process at the same global batch, and checkpoints
resume across process counts, for the diffusion model and the GAN (issue 17 item 4).

One process with ``model.batch_size=8`` against two with 4 each, float32 (``autocast=false``):

* the per-batch loss curves (``reports/train_losses.csv``, logged every batch; under DDP the logged value is
  the mean over the ranks, i.e. the global batch's loss) agree to a relative difference < ``LOSS_RTOL`` = 1e-4
  (measured: equal to the CSV's 6 decimals, at most 8e-7 relative, both models, 4 and 6 batches);
* the final weights (raw, EMA, BatchNorm statistics) are within a relative L2 distance ``WEIGHT_RTOL`` = 2e-3
  of the one-process run's, for the uninterrupted two-process run and for runs stopped half way and resumed on
  the other process count (2 -> 1 and 1 -> 2). Measured after these 4 batches: 1.6e-5 to 3.8e-5 (diffusion),
  6.3e-5 to 9.5e-5 (GAN); after 6 batches up to 1.3e-4. Not bit-equality, and not a per-element bound, on purpose: biases right before a GroupNorm/BatchNorm
  have a gradient that is 0 in exact arithmetic, so what they get is float noise, which Adam normalises to
  steps of +-lr whose signs depend on the summation order (the largest element differences, ~1e-3 at
  lr 2e-3, are all such biases).

Why they can agree at all: the sampler deals every global batch out by stride, every training draw (diffusion
noise, timesteps, label dropout; GAN latents and DiffAugment transforms, mode-seeking pairs) is drawn for the
global batch and sliced by rank, the GAN's BatchNorm statistics are all-reduced (``DistBatchNorm2d``), and DDP
averages gradients (:mod:`synthgen.models.distributed`). Without that (per-rank draws, per-rank BatchNorm) two
processes would run another random training than one process, whose losses differ at the first batch.

The two ranks are launched by the test as an external launcher would (``LOCAL_RANK``/``WORLD_SIZE`` set,
tests/ddp_jobs.py), so that all two-process runs share one pair of processes; one-process runs run in the test
process. One thread per process.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, make_medmnist_npz
from synthgen.config import compose
from synthgen.stages.prepare import prepare
from synthgen.stages.train import train

BATCH, BATCHES, HALF = 8, 4, 2
LOSS_RTOL = 1e-4
WEIGHT_RTOL = 2e-3
DATA = ["data=medmnist", "data.classes=[a,b,c]", "data.image_size=16"]
COMMON = ["trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "trainer.limit_val_batches=0",
          "train.num_threads=1", "train.checkpoint_every_s=100000"]
MODELS = {  # overrides, optimizer steps per batch, loss columns of the curve
    "ddpm": (["model=ddpm", "model.channels=[8,16]", "model.warmup_steps=2", "model.num_timesteps=100",
              "model.label_dropout=0.2", "model.autocast=false"], 1, ["train/loss_step"]),
    "cgan": (["model=cgan", "model.z_dim=8", "model.g_width=8", "model.d_width=8", "model.embed_dim=4",
              "model.standing_stats_batches=2", "model.diffaugment='color,translation,cutout'",
              "model.autocast=false"], 2, ["loss_d", "loss_g", "ms_ratio"]),
}


def _overrides(root: Path, model: str, run: str, procs: int, batches: int) -> list[str]:
    extra, per_batch, _ = MODELS[model]
    out = root / model / run
    trainer = ["trainer=ddp_cpu", f"trainer.devices={procs}"] if procs > 1 else []
    return [*DATA, f"data.path={root / 'toy.npz'}", f"paths.prepared={root / 'prepared'}",
            f"paths.models={out / 'models'}", f"paths.metrics={out / 'metrics'}", f"paths.reports={out / 'reports'}",
            *trainer, *COMMON, *extra, f"model.batch_size={BATCH // procs}",
            f"trainer.max_steps={batches * per_batch}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_two_procs(jobs: list[list[str]], tmp: Path, timeout: float = 300) -> None:
    """Run the train stage for each override list on 2 gloo ranks (tests/ddp_jobs.py)."""
    spec = tmp / "jobs.json"
    spec.write_text(json.dumps(jobs), encoding="utf-8")
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2", "NODE_RANK": "0",
               "LOCAL_RANK": str(rank), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen([sys.executable, str(REPO / "tests" / "ddp_jobs.py"), str(spec)], env=env,
                                      cwd=str(tmp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-4000:]


def curve(run: Path, columns: list[str]) -> np.ndarray:
    """``(batches, len(columns))`` logged losses of a run, one row per training batch."""
    with open(run / "reports" / "train_losses.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get(columns[0])]
    return np.array([[float(r[c]) for c in columns] for r in rows])


def weights(run: Path) -> dict[str, torch.Tensor]:
    """Float tensors of the final resume checkpoint's ``state_dict`` (raw and EMA weights, BN statistics)."""
    sd = torch.load(run / "models" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    return {k: v.float() for k, v in sd.items() if v.is_floating_point()}


def weight_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """``||a - b|| / ||a||`` over all tensors together (L2)."""
    assert a.keys() == b.keys()
    num = sum(float((a[k] - b[k]).pow(2).sum()) for k in a)
    return (num / max(sum(float(a[k].pow(2).sum()) for k in a), 1e-30)) ** 0.5


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """All runs of both models: one process (uninterrupted; 3 batches then 2 processes), two processes
    (uninterrupted; 3 batches then one process)."""
    root = tmp_path_factory.mktemp("ddp")
    make_medmnist_npz(root / "toy.npz", n=64, size=16, channels=1)  # 8 global batches an epoch, 56 training images
    prepare(compose([*DATA, f"data.path={root / 'toy.npz'}", f"paths.prepared={root / 'prepared'}"]))
    threads = torch.get_num_threads()
    try:
        for m in MODELS:
            train(compose(_overrides(root, m, "one", 1, BATCHES)))
            train(compose(_overrides(root, m, "one_to_two", 1, HALF)))
        _run_two_procs([job for m in MODELS for job in (
            _overrides(root, m, "two", 2, BATCHES), _overrides(root, m, "two_to_one", 2, HALF),
            _overrides(root, m, "one_to_two", 2, BATCHES))], root)
        for m in MODELS:
            train(compose(_overrides(root, m, "two_to_one", 1, BATCHES)))
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.mark.parametrize("model", list(MODELS))
def test_two_processes_train_as_one(runs: Path, model: str) -> None:
    cols = MODELS[model][2]
    one, two = curve(runs / model / "one", cols), curve(runs / model / "two", cols)
    assert one.shape == two.shape == (BATCHES, len(cols)), (one.shape, two.shape)
    rel = np.abs(one - two) / np.maximum(np.abs(one), 1e-3)
    assert rel.max() < LOSS_RTOL, (model, rel.max(axis=1), one, two)
    metrics = json.loads((runs / model / "two" / "metrics" / "train.json").read_text())
    assert metrics["batches"] == BATCHES
    assert weight_distance(weights(runs / model / "one"), weights(runs / model / "two")) < WEIGHT_RTOL


@pytest.mark.parametrize("model", list(MODELS))
def test_checkpoints_resume_across_process_counts(runs: Path, model: str) -> None:
    ref = weights(runs / model / "one")
    for run in ("two_to_one", "one_to_two"):
        metrics = json.loads((runs / model / run / "metrics" / "train.json").read_text())
        assert metrics["resumed_from_step"] == HALF * MODELS[model][1], (run, metrics["resumed_from_step"])
        assert metrics["batches"] == BATCHES
        assert weight_distance(ref, weights(runs / model / run)) < WEIGHT_RTOL, run
        # the resumed curve continues the first part's rows: the full curve matches the uninterrupted one
        cols = MODELS[model][2]
        full, resumed = curve(runs / model / "one", cols), curve(runs / model / run, cols)
        assert resumed.shape == full.shape, (run, resumed.shape)
        assert (np.abs(full - resumed) / np.maximum(np.abs(full), 1e-3)).max() < LOSS_RTOL, run


@pytest.mark.parametrize("n", [60, 64, 111])
def test_ranks_deal_out_the_one_process_batches(n: int) -> None:
    """Batch ``k`` of one process with ``B`` images holds exactly the images of the ranks' batches ``k`` (``B/W``
    each, positions ``r, r + W, ...``), and an epoch has the same number of batches on any process count, also
    where the stride would need padding (n = 111: 13 global batches of 8, the last 7 images dropped on both)."""
    from synthgen.data.resumable import EpochShuffleSampler

    def batches(rank: int, world: int, b: int) -> list[list[int]]:
        s = EpochShuffleSampler(n, seed=3, rank=rank, world_size=world)
        s.batch = b
        idx = s.indices(1)
        assert len(idx) == len(s)
        return [idx[i:i + b] for i in range(0, len(idx) - b + 1, b)]

    one = batches(0, 1, 8)
    ranks = [batches(r, 2, 4) for r in range(2)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == n // 8
    for k, full in enumerate(one):
        assert full[0::2] == ranks[0][k] and full[1::2] == ranks[1][k]


def test_gan_needs_an_even_batch_per_process() -> None:
    from synthgen.errors import ConfigError
    from synthgen.models.gan import ConditionalGAN

    gan = ConditionalGAN(["a", "b"], [1, 16, 16], z_dim=8, g_width=8, d_width=8, embed_dim=4)
    gan.check_distributed(3, 1)
    gan.check_distributed(4, 2)
    with pytest.raises(ConfigError, match="model.batch_size"):
        gan.check_distributed(3, 2)


def test_autoencoder_draws_the_global_batch_posterior_and_keeps_its_rows(monkeypatch) -> None:
    """The latent autoencoder under DDP: each rank draws the posterior noise of the whole global batch and keeps
    its stride rows, so ranks 0 and 1 with 4 images each see exactly the draws one process sees with 8."""
    from synthgen.models import distributed
    from synthgen.models.autoencoder import AutoencoderModule

    m = AutoencoderModule((1, 16, 16), channels=(8, 8), latent_channels=2, norm_num_groups=8, autocast=False,
                          seed=3)
    seen: list[torch.Tensor] = []
    monkeypatch.setattr(m, "loss", lambda x, eps: (seen.append(eps.clone()), (x.sum() * 0, x.sum() * 0))[1])
    monkeypatch.setattr(m, "log", lambda *a, **k: None)
    x = torch.rand(8, 1, 16, 16)
    m.training_step((x,), 0)  # one process, global batch 8
    for rank in range(2):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: (rank, 2))
        m._rng_streams = {}  # the same training batch on another rank
        m.training_step((x[rank::2],), 0)
    full, r0, r1 = seen
    assert full.shape == (8, 2, 8, 8) and r0.shape == r1.shape == (4, 2, 8, 8)
    assert torch.equal(full[0::2], r0) and torch.equal(full[1::2], r1)
