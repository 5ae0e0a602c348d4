"""Patient-aware nearest-neighbour distance ratio (Gu et al.): a copy sits much closer to one training
image than to any image of another patient.

    ratio(x) = d(x, nearest train) / d(x, nearest train image of a *different patient* than the nearest)

A sample is flagged when ``ratio < 1/3`` (or a stricter calibrated value). Comparing against another
patient matters: adjacent slices of one patient are near-duplicates of each other, so a plain 2nd-nearest
neighbour would hide a copy of a slice behind its neighbouring slice. Training images that are exact
duplicates of each other (native duplicates) are merged into one identity for the same reason.
"""

from __future__ import annotations

import numpy as np

from .knn import cosine_to_distance


def merge_identities(patient_ids: np.ndarray, duplicate_groups: list[list[int]]) -> np.ndarray:
    """``(N,)`` int64 identity per training image: patients, with exact-duplicate groups merged."""
    _, ident = np.unique(np.asarray(patient_ids, dtype=str), return_inverse=True)
    ident = ident.astype(np.int64)
    parent = np.arange(ident.max(initial=-1) + 1)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for g in duplicate_groups:
        roots = sorted({find(int(ident[i])) for i in g})
        for r in roots[1:]:
            parent[r] = roots[0]
    return np.array([find(int(i)) for i in ident], dtype=np.int64)


def distance_ratio(sims: np.ndarray, idx: np.ndarray, identity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour distance ratio from cosine neighbour lists.

    Args:
        sims: ``(Nq, k)`` cosine similarities, descending (unit vectors; distance ``sqrt(2 - 2 cos)``).
        idx: ``(Nq, k)`` training indices.
        identity: ``(N_train,)`` patient identity (:func:`merge_identities`).

    Returns:
        ``ratio`` ``(Nq,)`` float32 in ``[0, 1]`` (``1`` when the nearest distance is 0 to every listed image,
        i.e. undefined) and ``nearest`` ``(Nq,)`` training index. When all ``k`` listed neighbours share the
        nearest's identity, the ``k``-th distance stands in for the other-patient distance (a lower bound of
        it, so the ratio is over-estimated: conservative).
    """
    d = cosine_to_distance(sims).astype(np.float64)
    ident = identity[idx]                                           # (Nq, k)
    other = ident != ident[:, :1]
    has = other.any(axis=1)
    j = np.where(has, other.argmax(axis=1), idx.shape[1] - 1)
    d2 = d[np.arange(len(d)), j]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d2 > 0, d[:, 0] / d2, 1.0)
    return np.clip(ratio, 0.0, 1.0).astype(np.float32), idx[:, 0].copy()
