"""Near-duplicate check across splits: finds planted near-copies, ~0 on disjoint images, matches a brute-force
float64 reference whatever block sizes it takes."""

from __future__ import annotations

import numpy as np
import pytest

from synthgen.data.near_duplicates import PAIRS, format_table, near_duplicate_table, nearest_pearson, standardize


def _smooth_images(rng, n, channels=1, size=16):
    """Images with spatial structure (upsampled coarse noise + fine noise), values in [0, 1]."""
    coarse = rng.random((n, channels, 4, 4))
    x = np.repeat(np.repeat(coarse, size // 4, axis=2), size // 4, axis=3)
    return np.clip(0.8 * x + 0.2 * rng.random((n, channels, size, size)), 0, 1).astype(np.float32)


def _brute_force(queries, reference):
    def z(x):
        x = x.reshape(len(x), -1).astype(np.float64)
        x = x - x.mean(1, keepdims=True)
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    return (z(queries) @ z(reference).T).max(1)


def test_planted_near_copies_are_counted(one_thread):
    rng = np.random.default_rng(0)
    val, test = rng.random((200, 1, 28, 28)), rng.random((300, 1, 28, 28))
    planted = rng.choice(300, size=30, replace=False)
    test[planted] = val[rng.choice(200, size=30, replace=False)] + rng.normal(0, 0.01, (30, 1, 28, 28))
    train = rng.random((400, 1, 28, 28))
    t = near_duplicate_table({"train": train, "val": val, "test": test, "holdout": rng.random((50, 1, 28, 28))}, 0.95)
    assert list(t["pairs"]) == ["-".join(p) for p in PAIRS]
    vt = t["pairs"]["val-test"]
    assert vt["n"] == 300 and vt["near_copies"] == 30 and vt["share"] == pytest.approx(0.1)
    for name in ("train-val", "train-test", "train-holdout", "val-holdout", "test-holdout"):
        assert t["pairs"][name]["near_copies"] == 0, name  # disjoint random images
        assert t["pairs"][name]["median_nn_pearson"] < 0.3
    assert "val-test: 30/300 (10.00%)" in format_table(t)


def test_matches_float64_whatever_the_blocks(one_thread):
    rng = np.random.default_rng(1)
    ref, q = _smooth_images(rng, 150, channels=3), _smooth_images(rng, 60, channels=3)
    q[:10] = np.clip(ref[:10] + rng.normal(0, 0.02, ref[:10].shape), 0, 1)  # near-copies
    q[10:15] = np.clip(ref[20:25] * 0.9 + 0.05 + rng.normal(0, 0.05, ref[20:25].shape), 0, 1)  # around 0.95
    want = _brute_force(q, ref)
    zq, zr = standardize(q), standardize(ref)
    for cq, cr in ((1024, 16384), (7, 5)):
        got = nearest_pearson(zq, zr, chunk_queries=cq, chunk_reference=cr)
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert (want >= 0.95).sum() >= 10


def test_constant_and_empty_splits(one_thread):
    rng = np.random.default_rng(2)
    imgs = rng.random((5, 1, 8, 8)).astype(np.float32)
    flat = np.full((2, 1, 8, 8), 0.3, np.float32)
    z = standardize(np.concatenate([imgs, flat]))
    assert np.allclose(z[:5].norm(dim=1), 1, atol=1e-5) and float(z[5:].abs().max()) == 0.0
    assert (nearest_pearson(standardize(flat), standardize(flat)) == 0).all()  # undefined -> 0, never a copy
    t = near_duplicate_table({"train": imgs, "val": imgs[:0], "test": imgs}, 0.95)
    assert t["pairs"]["train-val"]["share"] is None and t["pairs"]["train-test"]["share"] == 1.0
    assert "val-holdout" not in t["pairs"] and "(empty split)" in format_table(t)
