"""The curation filter (issue 14): drops planted off-class and out-of-distribution samples, keeps held-out real
images of the right class, de-duplicates greedily; scores have the documented ranges."""

import numpy as np
import pytest
import torch

from synthgen.config import compose
from synthgen.curation.filter import REASONS, Thresholds, apply_filter, greedy_near_duplicates
from synthgen.curation.scores import classifier_scores, confidence, realism
from synthgen.metrics.classifier import Recipe
from synthgen.metrics.features import load_or_train

SIZE = 16


def shapes(n: int, label: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 1, 16, 16)`` uint8: 0 = a bright disk, 1 = a horizontal bar, 2 = a vertical bar, at random
    positions and sizes on a noisy dark background."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = np.empty((n, 1, SIZE, SIZE), np.uint8)
    for i in range(n):
        img = rng.normal(40, 12, (SIZE, SIZE))
        cy, cx = rng.integers(5, SIZE - 5, 2)
        w = rng.integers(2, 4)
        if label == 0:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= w ** 2 + 2
        elif label == 1:
            mask = (np.abs(yy - cy) <= w // 2) & (np.abs(xx - cx) <= 5)
        else:
            mask = (np.abs(xx - cx) <= w // 2) & (np.abs(yy - cy) <= 5)
        img[mask] += rng.normal(170, 15)
        out[i, 0] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def another_dataset(n: int, rng: np.random.Generator) -> np.ndarray:
    """Images of another kind: checkerboards of random phase and cell size."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = []
    for _ in range(n):
        s, p = rng.integers(2, 5), rng.integers(0, 4)
        out.append((((yy + p) // s + (xx + p) // s) % 2) * 200 + 20)
    return np.asarray(out, np.uint8)[:, None]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    rng = np.random.default_rng(0)
    train = {c: shapes(60, c, rng) for c in range(3)}
    held = {c: shapes(20, c, rng) for c in range(3)}
    x = np.concatenate([train[c] for c in range(3)])
    y = np.repeat(np.arange(3), 60)
    recipe = Recipe(width=8, stages=2, steps=150, batch_size=64, lr=3e-3, bf16=False)
    ext = load_or_train(x, y, 3, recipe, seed=0, balanced=True, cache_dir=tmp_path_factory.mktemp("cache"))
    real_f = ext(torch.from_numpy(x.astype(np.float32) / 255))
    return {"rng": rng, "train": train, "held": held, "y": y, "ext": ext, "real_f": real_f}


def _scores(world, images, labels):
    t = torch.from_numpy(images.astype(np.float32) / 255)
    return classifier_scores(world["ext"], t, np.asarray(labels), world["real_f"], world["y"], k=5, bf16=False)


def test_filter_drops_off_class_and_out_of_distribution_keeps_held_out_real(world):
    rng = world["rng"]
    good = world["held"][0]                                          # held-out real disks, labelled disk
    off = np.concatenate([world["held"][1][:8], world["held"][2][:8]])  # real bars labelled "disk"
    noise = rng.integers(0, 256, (6, 1, SIZE, SIZE)).astype(np.uint8)
    blank = np.concatenate([np.zeros((3, 1, SIZE, SIZE), np.uint8), np.full((3, 1, SIZE, SIZE), 255, np.uint8)])
    other = another_dataset(6, rng)
    images = np.concatenate([good, off, noise, blank, other])
    kind = np.repeat(["good", "off", "ood", "ood", "ood"], [len(good), len(off), len(noise), len(blank), len(other)])
    labels = np.zeros(len(images), np.int64)
    s = _scores(world, images, labels)
    assert s.confidence.dtype == np.float32 and ((s.confidence >= 0) & (s.confidence <= 1)).all()
    assert (s.realism >= 0).all() and np.isfinite(s.realism).all()
    thresholds = Thresholds.from_config(compose(()).curate.filter)   # the shipped defaults
    r = apply_filter(s.confidence, s.realism, images, labels, -s.confidence, thresholds)
    assert not r.kept[kind == "off"].any(), s.confidence[kind == "off"]
    assert not r.kept[kind == "ood"].any(), (s.confidence[kind == "ood"], s.realism[kind == "ood"])
    assert r.kept[kind == "good"].mean() >= 0.9, (s.confidence[kind == "good"], s.realism[kind == "good"])
    # the planted off-class images fail on confidence; out-of-distribution ones on confidence or realism
    assert set(r.reason[kind == "off"].tolist()) <= {REASONS.index("confidence"), REASONS.index("realism")}
    # realism separates held-out real images from out-of-distribution ones even without the confidence filter
    assert np.median(s.realism[kind == "good"]) <= 1.0 < s.realism[kind == "ood"].min()


def test_near_duplicates_are_dropped_greedily_and_scored(world):
    rng = world["rng"]
    pool = world["held"][1]
    distinct, _ = greedy_near_duplicates(pool, np.arange(len(pool)), 0.9)   # no two alike to begin with
    base = pool[distinct][:8]
    assert len(base) == 8
    dup = np.clip(base[:3].astype(int) + rng.integers(-2, 3, base[:3].shape), 0, 255).astype(np.uint8)
    images = np.concatenate([base, dup])
    order = np.arange(len(images))                      # originals first: the copies are the ones dropped
    kept, nn = greedy_near_duplicates(images, order, 0.95)
    assert kept[:8].all() and not kept[8:].any()
    assert (nn[8:] >= 0.95).all() and (nn[:8] < 0.95).all() and nn.dtype == np.float32
    kept2, _ = greedy_near_duplicates(images, order[::-1], 0.95)   # copies first: the originals go
    assert kept2[8:].all() and not kept2[:3].any() and kept2[3:8].all()
    all_kept, nn_all = greedy_near_duplicates(images, order, None)
    assert all_kept.all() and (nn_all >= -1).all() and (nn_all <= 1).all()
    lone, nn_lone = greedy_near_duplicates(images[:1], np.arange(1), 0.95)
    assert lone.all() and nn_lone[0] == -1.0               # no other kept sample of the class


def test_score_helpers_shapes_and_edges():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert confidence(p, np.array([0, 0])).tolist() == pytest.approx([0.7, 0.1])
    real = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    real_y = np.array([0, 0, 0, 1])
    r = realism(np.array([[0.0, 0.0], [10.0, 10.0], [5.0, 5.0]]), np.array([0, 0, 1]), real, real_y, k=1)
    assert r[0] == 0.0 and r[1] > 5                     # on a real image; far outside the class
    assert r[2] == np.inf                              # class with a single real image: no radius
    assert r.dtype == np.float32
