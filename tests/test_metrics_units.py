"""Pure unit tests of the metric maths (no real data, seconds)."""

import numpy as np
import pytest
import scipy.linalg
import torch

from synthgen.metrics.classifier import Recipe, class_balanced_weights, embed, predict_proba, train_classifier
from synthgen.metrics.diversity import fit_betas, intra_class_ms_ssim, ms_ssim_pairs
from synthgen.metrics.frechet import frechet_distance, kernel_distance
from synthgen.metrics.prdc import prdc, prdc_per_class
from synthgen.metrics.utility import LabeledImages, arm_pool, only_classes, rare_gain, score, summarize


def _gauss(n, d, seed, shift=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(shift, scale, size=(n, d))


def test_fd_identical_sets_is_zero_and_matches_scipy_sqrtm():
    a = _gauss(500, 8, 0)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    b = _gauss(400, 8, 1, shift=0.3, scale=1.5)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


def test_fd_of_a_mean_shift_is_the_squared_shift():
    a = _gauss(1000, 4, 0)
    assert frechet_distance(a, a + 2.0) == pytest.approx(4 * 4.0, rel=1e-9)


def test_kid_near_zero_for_same_distribution_and_positive_for_shift():
    a, b = _gauss(600, 16, 0), _gauss(600, 16, 1)
    same, _ = kernel_distance(a, b, subsets=20, subset_size=300)
    far, _ = kernel_distance(a, _gauss(600, 16, 2, shift=1.0), subsets=20, subset_size=300)
    assert abs(same) < 0.05 and far > 1.0


def test_prdc_identical_and_disjoint_sets():
    a = _gauss(300, 5, 0)
    same = prdc(a, a.copy(), k=5)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    assert same["density"] >= 1.0
    far = prdc(a, a + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # Fakes collapsed onto a small part of the real manifold: precise but low recall/coverage.
    collapsed = prdc(a, a[a[:, 0] > 1.0] + 1e-3, k=5)
    assert collapsed["precision"] > 0.9 and collapsed["coverage"] < 0.4


def test_prdc_per_class_skips_tiny_classes():
    a = _gauss(100, 3, 0)
    y = np.r_[np.zeros(97, int), np.ones(3, int)]
    out = prdc_per_class(a, y, a, y, ["x", "y"], k=5)
    assert out["y"] is None and out["x"]["precision"] == 1.0


def test_ms_ssim_scales_fit_small_images():
    assert len(fit_betas(28, 5)) == 3 and sum(fit_betas(28, 5)) == pytest.approx(1.0)
    assert len(fit_betas(256, 11)) == 5
    with pytest.raises(ValueError):
        fit_betas(4, 5)


def test_ms_ssim_identical_vs_unrelated_images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 28, 28, generator=g)
    y = torch.rand(8, 1, 28, 28, generator=g)
    assert np.allclose(ms_ssim_pairs(x, x), 1.0, atol=1e-5)
    assert (ms_ssim_pairs(x, y) < 0.2).all()


def test_mode_collapse_raises_intra_class_ms_ssim():
    g = torch.Generator().manual_seed(0)
    varied = torch.rand(40, 1, 28, 28, generator=g)
    collapsed = varied[:2].repeat(20, 1, 1, 1)
    labels = np.zeros(40, int)
    a = intra_class_ms_ssim(varied, labels, ["c"], pairs=100, seed=0)["c"]
    b = intra_class_ms_ssim(collapsed, labels, ["c"], pairs=100, seed=0)["c"]
    assert b > a + 0.3


def test_score_and_summary():
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 0, 1, 0, 2, 2]] * 0.9 + 0.1 / 3
    s = score(probs, y, 3)
    assert s["accuracy"] == pytest.approx(5 / 6)
    assert s["recall"] == [1.0, 0.5, 1.0] and s["balanced_accuracy"] == pytest.approx(2.5 / 3)
    assert s["confusion"].sum() == 6 and s["confusion"][1, 0] == 1
    summ = summarize({"trtr": [s, s]}, ["a", "b", "c"])
    assert summ["trtr"]["recall"]["b"] == {"mean": 0.5, "std": 0.0}


def test_balanced_and_mixed_sampling_weights():
    y = np.array([0] * 90 + [1] * 10)
    w = class_balanced_weights(y, 2)
    assert w[y == 0].sum() == pytest.approx(w[y == 1].sum())
    real = LabeledImages(torch.zeros(100, 1, 4, 4), y)
    syn = LabeledImages(torch.zeros(30, 1, 4, 4), np.array([0] * 10 + [1] * 20))
    _, labels, w = arm_pool("trs_balanced", real, syn, 2, synthetic_share=0.25)
    w = w / w.sum()
    assert w[labels == 1].sum() == pytest.approx(0.5)
    assert w[100:][labels[100:] == 1].sum() == pytest.approx(0.5 * 0.25)


def test_rare_gain_share_of_gap():
    def arm(recall_rare, bal):
        return {"recall": {"r": {"mean": recall_rare}}, "balanced_accuracy": {"mean": bal}}
    summary = {"trtr": arm(0.0, 0.8), "trtr_balanced": arm(0.5, 0.85), "trs_balanced": arm(0.75, 0.88),
               "full_reference": arm(1.0, 0.9)}
    g = rare_gain(summary, ["r"])
    assert g["oversampling"]["gap_closed_rare_recall"] == pytest.approx(0.5)
    assert g["synthetic"]["gap_closed_rare_recall"] == pytest.approx(0.75)
    assert g["synthetic"]["gap_closed_balanced_accuracy"] == pytest.approx(0.8)
    assert g["synthetic_minus_oversampling"]["rare_recall"] == pytest.approx(0.25)


def test_rare_gain_pairs_seeds_and_only_classes_keeps_the_rare_images():
    def seed(recalls, bal):
        return {"recall": recalls, "balanced_accuracy": bal}
    runs = {"trtr_balanced": [seed([0.9, 0.5], 0.70), seed([0.9, 0.6], 0.75), seed([0.9, 0.4], 0.65)],
            "trs_balanced_rare": [seed([0.9, 0.6], 0.72), seed([0.9, 0.8], 0.80), seed([0.9, 0.5], 0.66)]}
    summary = {a: {"recall": {n: {"mean": float(np.mean([s["recall"][i] for s in r]))} for i, n in enumerate("cr")},
                   "balanced_accuracy": {"mean": float(np.mean([s["balanced_accuracy"] for s in r]))}}
               for a, r in runs.items()}
    g = rare_gain(summary, ["r"], runs, ["c", "r"])
    p = g["boost_plan_paired"]["rare_recall"]
    assert p["per_seed"] == pytest.approx([0.1, 0.2, 0.1]) and p["mean"] == pytest.approx(0.4 / 3)
    # t(0.975, 2) = 4.303; sd of (0.1, 0.2, 0.1) = 0.0577
    assert p["half_width"] == pytest.approx(4.303 * 0.057735 / 3 ** 0.5, rel=1e-3)
    assert g["boost_plan_paired"]["balanced_accuracy"]["per_seed"] == pytest.approx([0.02, 0.05, 0.01])
    assert "boost_plan_paired" not in rare_gain(summary, ["r"])  # no per-seed runs: means only
    data = LabeledImages(torch.arange(5, dtype=torch.float32).reshape(5, 1, 1, 1), np.array([0, 1, 2, 1, 0]))
    kept = only_classes(data, [1])
    assert kept.labels.tolist() == [1, 1] and kept.images.flatten().tolist() == [1.0, 3.0]
    assert len(only_classes(data, [5]).labels) == 0


def test_classifier_learns_a_separable_toy_task_and_is_deterministic(one_thread):
    g = torch.Generator().manual_seed(0)
    y = np.arange(64) % 2
    x = torch.rand(64, 1, 16, 16, generator=g) * 0.3 + torch.as_tensor(y, dtype=torch.float32)[:, None, None, None] * 0.6
    r = Recipe(width=8, stages=2, steps=30, batch_size=32, lr=5e-3)
    m1 = train_classifier(x, y, None, 2, r, seed=3)
    m2 = train_classifier(x, y, None, 2, r, seed=3)
    p = predict_proba(m1, x, bf16=False)
    assert (p.argmax(1) == y).mean() > 0.95
    assert np.array_equal(embed(m1, x), embed(m2, x))
    assert embed(m1, x).shape == (64, 16)
