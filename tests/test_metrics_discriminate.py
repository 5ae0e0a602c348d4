"""The metrics must prove they discriminate (issue 4, item 7), on real BloodMNIST with tiny budgets.

"Synthetic" cohorts are built from real images the extractor never saw (the val split): as-is (must
sit at the real-vs-real floor), blurred and noised (worse FD/KID), class-shuffled (worse per-class
PRDC), label-shuffled (TSTR near chance), a copy of the training set (perfect fidelity), and a
mode-collapsed cohort (higher intra-class MS-SSIM).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import shared_npz
from synthgen.metrics.classifier import Recipe, predict_proba, train_classifier
from synthgen.metrics.diversity import intra_class_ms_ssim
from synthgen.metrics.features import load_or_train
from synthgen.metrics.fidelity import fidelity_report
from synthgen.metrics.utility import score

TINY = Recipe(width=16, steps=120, batch_size=64, lr=3e-3)
NAMES = [f"c{i}" for i in range(8)]


def _take(z, split, n, rng):
    x, y = z[f"{split}_images"], z[f"{split}_labels"][:, 0].astype(np.int64)
    idx = np.sort(rng.choice(len(x), min(n, len(x)), replace=False))
    return np.ascontiguousarray(x[idx].transpose(0, 3, 1, 2)), y[idx]


@pytest.fixture(scope="module")
def blood():
    path = shared_npz("bloodmnist.npz")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # far faster than 2 spinning threads on a machine shared with other jobs
    rng = np.random.default_rng(0)
    with np.load(path) as z:
        train, val, test = (_take(z, s, n, rng) for s, n in (("train", 2400), ("val", 1000), ("test", 1000)))
    extractor = load_or_train(train[0], train[1], 8, TINY, seed=0, balanced=True, cache_dir=None)

    def f(x):
        t = torch.from_numpy(x.astype(np.float32) / 255.0) if x.dtype == np.uint8 else x
        return extractor(t)

    yield {"train": train, "val": val, "test": test, "f": f,
           "f_train": f(train[0]), "f_test": f(test[0]), "f_val": f(val[0])}
    torch.set_num_threads(threads)


def _report(b, f_syn, y_syn):
    return fidelity_report(f_syn, y_syn, b["f_train"], b["train"][1], b["f_test"], b["test"][1], NAMES,
                           max_samples=1000, k=5, kid_subsets=10, kid_subset_size=500, seed=0)


def _val_float(b):
    return torch.from_numpy(b["val"][0].astype(np.float32) / 255.0)


def _mean_class_precision(rep):
    return np.mean([v["precision"] for v in rep["per_class"].values() if v])


def test_real_vs_real_sits_at_the_floor_and_a_train_copy_is_perfect(blood):
    real = _report(blood, blood["f_val"], blood["val"][1])
    assert real["fd"] < 1.5 * real["fd_floor"] + 1e-6, real
    assert real["precision"] > 0.8 * real["floor"]["precision"]
    assert real["coverage"] > 0.8 * real["floor"]["coverage"]
    copy = _report(blood, blood["f_train"], blood["train"][1])
    assert copy["fd"] == pytest.approx(copy["fd_floor"], rel=0.15)
    for k in ("precision", "recall", "coverage"):
        assert copy[k] == pytest.approx(copy["floor"][k], abs=0.05)


def test_blur_and_noise_are_caught_by_fd_and_kid(blood):
    x = _val_float(blood)
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k = (k[:, None] * k[None, :] / 256.0).expand(3, 1, 5, 5)
    blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=3)
    noised = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    real = _report(blood, blood["f_val"], blood["val"][1])
    for name, imgs in (("blur", blurred), ("noise", noised)):
        rep = _report(blood, blood["f"](imgs), blood["val"][1])
        assert rep["fd"] > 3 * real["fd"] and rep["fd"] > 2 * rep["fd_floor"], (name, rep["fd"], real["fd"])
        assert rep["kid"] > 3 * max(real["kid"], rep["kid_floor"], 1e-4), name


def test_class_shuffle_is_caught_by_per_class_prdc_not_overall_fd(blood):
    y = blood["val"][1]
    real = _report(blood, blood["f_val"], y)
    shuffled = _report(blood, blood["f_val"], (y + 1) % 8)
    assert shuffled["fd"] == pytest.approx(real["fd"], rel=1e-6)  # same images: class-blind FD cannot see it
    assert _mean_class_precision(shuffled) < 0.5 * _mean_class_precision(real)


def test_label_shuffled_tstr_is_near_chance(blood):
    (x, y), (xt, yt) = blood["train"], blood["test"]
    x, xt = (torch.from_numpy(a.astype(np.float32) / 255.0) for a in (x, xt))
    shuffled = np.random.default_rng(1).permutation(y)
    good = score(predict_proba(train_classifier(x, y, None, 8, TINY, seed=0), xt), yt, 8)
    bad = score(predict_proba(train_classifier(x, shuffled, None, 8, TINY, seed=0), xt), yt, 8)
    assert good["balanced_accuracy"] > 0.6, good
    # Chance: balanced accuracy 1/8; accuracy at most the largest class share (~0.2).
    assert bad["balanced_accuracy"] < 0.2 and bad["accuracy"] < 0.3, bad


def test_mode_collapse_is_caught_by_intra_class_ms_ssim(blood):
    x, y = _val_float(blood), blood["val"][1]
    tx, ty = torch.from_numpy(blood["train"][0].astype(np.float32) / 255.0), blood["train"][1]
    # Collapsed cohort: every class repeats its first 3 images.
    keep = np.concatenate([np.flatnonzero(y == c)[:3] for c in range(8)])
    reps = np.concatenate([np.resize(keep[y[keep] == c], (y == c).sum()) for c in range(8)])
    yc = y[reps]
    kw = dict(pairs=100, seed=0)
    real = np.mean(list(intra_class_ms_ssim(tx, ty, NAMES, **kw).values()))
    same = np.mean(list(intra_class_ms_ssim(x, y, NAMES, **kw).values()))
    collapsed = np.mean(list(intra_class_ms_ssim(x[reps], yc, NAMES, **kw).values()))
    assert abs(same / real - 1) < 0.15
    assert collapsed > 1.3 * real
