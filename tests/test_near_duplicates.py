"""Near-duplicate check across splits: finds planted near-copies, ~0 on disjoint images, matches a brute-force
float64 reference whichever matmul path (bf16 prefilter or float32) and block sizes it takes."""

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


def test_exact_and_bf16_paths_agree_with_float64(one_thread):
    rng = np.random.default_rng(1)
    ref, q = _smooth_images(rng, 150, channels=3), _smooth_images(rng, 60, channels=3)
    q[:10] = np.clip(ref[:10] + rng.normal(0, 0.02, ref[:10].shape), 0, 1)  # near-copies
    q[10:15] = np.clip(ref[20:25] * 0.9 + 0.05 + rng.normal(0, 0.05, ref[20:25].shape), 0, 1)  # around 0.95
    want = _brute_force(q, ref)
    zq, zr = standardize(q), standardize(ref)
    for exact in (True, False):
        for cq, cr in ((1024, 16384), (7, 5)):
            got = nearest_pearson(zq, zr, exact=exact, chunk_queries=cq, chunk_reference=cr)
            np.testing.assert_allclose(got, want, atol=1e-5)
    # With a threshold the bf16 path is exact near it and at most the documented bound below elsewhere.
    got = nearest_pearson(zq, zr, threshold=0.95, exact=False, chunk_queries=16, chunk_reference=40)
    assert ((got >= 0.95) == (want >= 0.95)).all() and (want >= 0.95).sum() >= 10
    assert (got <= want + 1e-5).all() and (got >= want - 0.024).all()


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


def test_bf16_prefilter_rescans_when_candidates_crowd(monkeypatch, one_thread):
    # 60 noisy variants of one image correlate with each query within ~0.002 of each other: bf16 rounding
    # reorders them, so the true nearest one can fall outside the top-k; near the threshold the result must
    # still be exact (the full float32 rescan).
    import synthgen.data.near_duplicates as nd

    monkeypatch.setattr(nd, "_TOPK", 2)
    rng = np.random.default_rng(3)
    base = _smooth_images(rng, 1, size=28)
    ref = np.concatenate([base + rng.normal(0, 0.03, (60, 1, 28, 28)), _smooth_images(rng, 50, size=28)])
    q = base + rng.normal(0, 0.03, (20, 1, 28, 28))
    want = _brute_force(q, ref)
    got = nd.nearest_pearson(standardize(q), standardize(ref), threshold=0.95, exact=False)
    np.testing.assert_allclose(got, want, atol=1e-5)
