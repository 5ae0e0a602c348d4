"""The curation filter: which generated samples are kept, from their scores and one threshold per score.

A sample is kept when, in this order,

1. ``confidence >= min_confidence`` (the classifier sees the intended class), else dropped as ``confidence``;
2. ``realism <= max_realism`` (inside the real class's feature manifold, :mod:`.scores`), else ``realism``;
3. it is not a near-duplicate of a sample already kept: within each class the survivors of 1-2 are taken
   greedily in ``priority`` order (lower first) and one whose pixel Pearson correlation with an already kept
   sample of its class reaches ``near_duplicate`` is dropped as ``near_duplicate``.

``nn_synthetic`` (per sample, also for dropped ones) is the Pearson correlation with the nearest *other* kept
sample of the class, in ``[-1, 1]`` (``-1`` when the class keeps no other sample; a constant image correlates
0 with everything, :func:`synthgen.data.near_duplicates.standardize`). Every kept sample scores below
``near_duplicate`` (the later of two kept samples was checked against the earlier), every sample dropped as a
near-duplicate at or above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ..data.near_duplicates import standardize

REASONS = ("kept", "confidence", "realism", "near_duplicate")


@dataclass(frozen=True)
class Thresholds:
    """``curate.filter``: ``min_confidence`` in ``[0, 1]``; ``max_realism`` ``> 0`` or None (no realism
    filter); ``near_duplicate`` in ``(-1, 1]`` or None (no near-duplicate filter); ``realism_k`` >= 1."""

    min_confidence: float = 0.0
    max_realism: float | None = None
    near_duplicate: float | None = None
    realism_k: int = 5

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Thresholds":
        get = (lambda k, d: cfg.get(k, d))
        mr, nd = get("max_realism", None), get("near_duplicate", None)
        return cls(float(get("min_confidence", 0.0)), None if mr is None else float(mr),
                   None if nd is None else float(nd), int(get("realism_k", 5)))

    def to_dict(self) -> dict[str, Any]:
        return {"min_confidence": self.min_confidence, "max_realism": self.max_realism,
                "near_duplicate": self.near_duplicate, "realism_k": self.realism_k}


@dataclass
class FilterResult:
    """``kept`` ``(N,)`` bool; ``reason`` ``(N,)`` int8 index into :data:`REASONS`; ``nn_synthetic`` ``(N,)``
    float32 in ``[-1, 1]``."""

    kept: np.ndarray
    reason: np.ndarray
    nn_synthetic: np.ndarray

    def counts(self) -> dict[str, int]:
        """Samples per reason (``kept`` and each drop reason)."""
        return {r: int((self.reason == i).sum()) for i, r in enumerate(REASONS)}


def greedy_near_duplicates(images: np.ndarray, order: np.ndarray, threshold: float | None,
                           chunk: int = 1024, dense_max: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Greedy de-duplication of one class.

    Args:
        images: ``(N, C, H, W)`` (any real dtype) the samples of one class.
        order: ``(n,)`` rows of ``images`` eligible for keeping, best first.
        threshold: Pearson correlation at which a sample duplicates a kept one; None keeps every eligible row.
        chunk: rows per similarity block for the final scores.
        dense_max: largest class whose ``(N, N)`` float32 correlation matrix is computed at once (256 MiB).

    Returns:
        ``kept`` ``(N,)`` bool and ``nn`` ``(N,)`` float32: Pearson correlation of every row with the nearest
        other kept row (``-1`` when there is none).
    """
    z = standardize(images)
    n = len(images)
    kept = np.zeros(n, dtype=bool)
    if threshold is None:
        kept[np.asarray(order, dtype=np.int64)] = True
    else:
        # all pairwise correlations in one matmul where they fit (n <= dense_max), else one row per kept sample
        sim = (z @ z.T).numpy() if n <= dense_max else None
        best = np.full(n, -np.inf, dtype=np.float32)  # max correlation with the kept rows so far
        for i in np.asarray(order, dtype=np.int64):
            if best[i] >= threshold:
                continue
            kept[i] = True
            np.maximum(best, sim[i] if sim is not None else (z @ z[i]).numpy(), out=best)
    nn = np.full(n, -1.0, dtype=np.float32)
    keep_idx = np.flatnonzero(kept)
    if len(keep_idx):
        zk = z[torch.from_numpy(keep_idx)]
        for lo in range(0, n, chunk):
            sim = z[lo:lo + chunk] @ zk.T  # (chunk, n_kept)
            rows = torch.arange(lo, min(lo + chunk, n))
            self_col = torch.from_numpy(np.searchsorted(keep_idx, rows.numpy()))
            is_self = torch.from_numpy(kept[lo:lo + chunk])
            sim[is_self, self_col[is_self]] = -np.inf  # never one's own nearest neighbour
            vals = sim.max(dim=1).values if sim.shape[1] else torch.full((len(rows),), -np.inf)
            nn[lo:lo + chunk] = np.maximum(vals.numpy(), -1.0)
    return kept, nn.clip(-1.0, 1.0)


def apply_filter(confidence: np.ndarray, realism: np.ndarray, images: np.ndarray, labels: np.ndarray,
                 priority: np.ndarray, thresholds: Thresholds) -> FilterResult:
    """Run the filter (module docstring) over a cohort.

    Args:
        confidence: ``(N,)`` in ``[0, 1]``; realism: ``(N,)`` in ``[0, inf]`` (:mod:`.scores`).
        images: ``(N, C, H, W)`` the samples (pixel Pearson for near-duplicates).
        labels: ``(N,)`` int64 intended classes.
        priority: ``(N,)`` sort key, lower = taken first by the near-duplicate pass (ties by row).
        thresholds: the ``curate.filter`` thresholds.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    reason = np.zeros(n, dtype=np.int8)
    ok_conf = np.asarray(confidence) >= thresholds.min_confidence
    reason[~ok_conf] = REASONS.index("confidence")
    ok_real = np.ones(n, bool) if thresholds.max_realism is None else np.asarray(realism) <= thresholds.max_realism
    reason[ok_conf & ~ok_real] = REASONS.index("realism")
    eligible = ok_conf & ok_real
    kept = np.zeros(n, dtype=bool)
    nn = np.full(n, -1.0, dtype=np.float32)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        local = np.flatnonzero(eligible[rows])
        local = local[np.lexsort((local, np.asarray(priority)[rows][local]))]
        k, s = greedy_near_duplicates(images[rows], local, thresholds.near_duplicate)
        kept[rows], nn[rows] = k, s
    reason[eligible & ~kept] = REASONS.index("near_duplicate")
    return FilterResult(kept=kept, reason=reason, nn_synthetic=nn)


__all__ = ["REASONS", "FilterResult", "Thresholds", "apply_filter", "greedy_near_duplicates"]
