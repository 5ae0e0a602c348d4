"""Tempered class-balanced label sampling (``train.class_balance``, synthgen.data.resumable.ClassBalancedSampler):
the class mixture follows ``n_c ** (1 - b)``, ``b = 0`` gives the plain shuffle's batches, a restored loader
continues the stream exactly, and bad values stop with a one-line config error (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from conftest import REPO
from synthgen.config import load_config
from synthgen.data.resumable import ClassBalancedSampler, ResumableLoader, class_mixture
from synthgen.errors import ConfigError
from synthgen.stages.train import mixture_report, train_loader

LABELS = np.array([0] * 90 + [1] * 9 + [2] * 1)  # 90 / 9 / 1 images


def _ds(labels=LABELS):
    return TensorDataset(torch.arange(len(labels)), torch.from_numpy(labels))


def _batches(loader, n, field=0):
    out, it = [], iter(loader)
    while len(out) < n:
        try:
            out.append(next(it)[field].tolist())
        except StopIteration:
            it = iter(loader)
    return out


def test_mixture_formula():
    assert np.allclose(class_mixture(np.array([90, 9, 1]), 0.0), [0.9, 0.09, 0.01])
    assert np.allclose(class_mixture(np.array([90, 9, 1]), 1.0), [1 / 3] * 3)
    half = class_mixture(np.array([90, 9, 1, 0]), 0.5)
    assert np.allclose(half, np.array([90 ** 0.5, 3, 1, 0]) / (90 ** 0.5 + 4)) and half[3] == 0


@pytest.mark.parametrize("b", [0.25, 0.5, 1.0])
def test_drawn_classes_follow_the_tempered_frequencies(b):
    s = ClassBalancedSampler(LABELS, seed=3, class_balance=b)
    drawn = np.concatenate([LABELS[s.order(e)] for e in range(300)])  # 30000 draws
    shares = np.bincount(drawn, minlength=3) / len(drawn)
    want = class_mixture(np.bincount(LABELS), b)
    assert np.abs(shares - want).max() < 0.015, (shares, want)
    # within a class, images are drawn uniformly: every one of the 9 class-1 images about equally often
    ones = np.concatenate([np.asarray(s.order(e)) for e in range(300)])
    per_image = np.bincount(ones[LABELS[ones] == 1], minlength=99)[90:99]
    assert per_image.min() > 0.8 * per_image.mean(), per_image
    assert len(s.order(0)) == len(LABELS) and s.order(5) == ClassBalancedSampler(LABELS, 3, b).order(5)
    assert s.order(5) != s.order(6) and s.order(5) != ClassBalancedSampler(LABELS, 4, b).order(5)


def test_zero_is_the_plain_seeded_shuffle():
    """b = 0: the batches of the loader as it was before the option (randperm seeded by (seed, epoch))."""
    dl = train_loader(np.zeros((100, 1, 2, 2), np.float32), LABELS, 8, seed=7, class_balance=0.0)
    assert type(dl.sampler).__name__ == "EpochShuffleSampler"
    got = _batches(dl, 30, field=1)  # 12 batches an epoch, 2.5 epochs
    ref = []
    for e in range(3):
        perm = torch.randperm(100, generator=torch.Generator().manual_seed(7 * 1_000_003 + e)).tolist()
        ref += [LABELS[perm[i:i + 8]].tolist() for i in range(0, 96, 8)]
    assert got == ref[:30]
    assert "class_balance" not in dl.state_dict()


def test_a_restored_balanced_loader_continues_exactly_and_ignores_other_balances():
    ref = _batches(ResumableLoader(_ds(), batch_size=8, seed=7, labels=LABELS, class_balance=0.5), 40)
    for k in (1, 12, 13, 30):
        a = ResumableLoader(_ds(), batch_size=8, seed=7, labels=LABELS, class_balance=0.5)
        seen = _batches(a, k)
        b = ResumableLoader(_ds(), batch_size=8, seed=7, labels=LABELS, class_balance=0.5)
        b.load_state_dict(a.state_dict())
        assert seen + _batches(b, 40 - k) == ref, k
    a = ResumableLoader(_ds(), batch_size=8, seed=7, labels=LABELS, class_balance=0.5)
    _batches(a, 5)
    for other in (0.0, 1.0):  # another balance's position is ignored: the stream starts at epoch 0
        c = ResumableLoader(_ds(), batch_size=8, seed=7, labels=LABELS, class_balance=other)
        c.load_state_dict(a.state_dict())
        fresh = ResumableLoader(_ds(), batch_size=8, seed=7, labels=LABELS, class_balance=other)
        assert _batches(c, 3) == _batches(fresh, 3), other


def test_mixture_report_counts_the_batches_trained():
    dl = train_loader(np.zeros((100, 1, 2, 2), np.float32), LABELS, 10, seed=1, class_balance=1.0)
    rep = mixture_report(dl, LABELS, ["a", "b", "c"], batches=25, class_balance=1.0)
    drawn = np.concatenate([LABELS[dl.sampler.indices(e)] for e in range(3)])[:250]
    assert rep["images_drawn"] == 250 and rep["data"] == {"a": 0.9, "b": 0.09, "c": 0.01}
    assert rep["drawn"] == {c: round(float(v), 5) for c, v in zip("abc", np.bincount(drawn, minlength=3) / 250)}
    assert rep["target"] == {c: round(1 / 3, 5) for c in "abc"}


@pytest.mark.parametrize("value,needle", [("1.5", "[0, 1]"), ("-0.1", "[0, 1]"), ("abc", "'abc'")])
def test_bad_class_balance_is_a_config_error(value, needle):
    with pytest.raises(ConfigError) as e:
        load_config([f"train.class_balance={value}"])
    assert e.value.key == "train.class_balance" and needle in str(e.value), str(e.value)


def test_bad_class_balance_exits_2_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "pipelines" / "train.py"), "train.class_balance=2"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "train.class_balance" in lines[0], r.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_finetune_settings_and_bad_values():
    from synthgen.models.finetune import finetune_settings

    names = ["a", "b", "c"]
    assert finetune_settings({"finetune": {"classes": [], "steps": 5}}, names) is None
    assert finetune_settings({"finetune": {"classes": ["a"], "steps": 0}}, names) is None
    assert finetune_settings({"finetune": {"classes": ["c"], "steps": 5, "lr_factor": 0.2}}, names) == {
        "classes": ["c"], "labels": [2], "steps": 5, "lr_factor": 0.2}
    with pytest.raises(ConfigError) as e:
        finetune_settings({"finetune": {"classes": ["basophil"], "steps": 5}}, names)
    assert e.value.key == "train.finetune.classes" and "'basophil'" in str(e.value)
    for override, key in (("train.finetune.lr_factor=0", "train.finetune.lr_factor"),
                          ("train.finetune.steps=-1", "train.finetune.steps"),
                          ("train.finetune.classes=[a,a]", "train.finetune.classes")):
        with pytest.raises(ConfigError) as e:
            load_config([override])
        assert e.value.key == key, str(e.value)
