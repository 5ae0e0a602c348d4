"""Exact k-nearest-neighbour search by cosine / Pearson similarity, chunked so memory stays bounded.

Pearson correlation of two vectors is the cosine similarity of their centred versions, so both metrics
reduce to one matmul of row-normalised matrices::

    sim(q, b) = <q~, b~>,  q~ = (q - mean(q) * [pearson]) / ||q - mean(q) * [pearson]||

Queries are processed in chunks of ``rows`` so that the ``(rows, N_base)`` similarity block stays under
``chunk_mb``; each block is reduced with ``torch.topk`` before the next one is formed, so peak memory is
``O(rows * N_base + N_query * k)`` instead of ``O(N_query * N_base)``. The same code runs on a CUDA device.
An optional faiss ``IndexFlatIP`` path (exact, same result up to float rounding) is kept for comparison
(``benchmarks/privacy_scale.py`` measures both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

EPS = 1e-8


def normalize_rows(x: torch.Tensor | np.ndarray, center: bool = False) -> torch.Tensor:
    """``(N, D)`` (or ``(N, ...)``, flattened) -> float32 ``(N, D)`` rows of unit L2 norm.

    ``center=True`` subtracts each row's mean first (then row dot products are Pearson correlations).
    Constant rows become all-zero (similarity 0 to everything) instead of NaN.
    """
    t = torch.as_tensor(x).reshape(len(x), -1).to(torch.float32)
    if center:
        t = t - t.mean(dim=1, keepdim=True)
    return t / t.norm(dim=1, keepdim=True).clamp_min(EPS)


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _rows_per_chunk(n_base: int, chunk_mb: float) -> int:
    return max(1, int(chunk_mb * 2**20 // (4 * max(n_base, 1))))


@torch.no_grad()
def knn(queries: torch.Tensor, base: torch.Tensor, k: int, chunk_mb: float = 256.0,
        backend: str = "auto", device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` most similar base rows for every query row (exact search).

    Args:
        queries: ``(Nq, D)`` float32, rows already normalised (:func:`normalize_rows`).
        base: ``(Nb, D)`` float32, rows already normalised.
        k: neighbours per query (clipped to ``Nb``).
        chunk_mb: budget for one similarity block ``(rows, Nb)`` float32.
        backend: ``"torch"`` (chunked matmul + topk), ``"faiss"`` (``IndexFlatIP``) or ``"auto"``: faiss on
            CPU when installed (at 10k x 10k, ``benchmarks/privacy_scale.py``: 1.0-1.3x faster than the
            chunked matmul on one thread, 1.6x on two), torch on a GPU.
        device: torch device for the ``torch`` backend.

    Returns:
        ``sims`` ``(Nq, k)`` float32 (descending per row) and ``idx`` ``(Nq, k)`` int64 into ``base``.
    """
    nq, nb = len(queries), len(base)
    k = min(int(k), nb)
    if nq == 0 or k == 0:
        return np.zeros((nq, k), np.float32), np.zeros((nq, k), np.int64)
    if backend == "auto":
        backend = "faiss" if torch.device(device).type == "cpu" and _has_faiss() else "torch"
    if backend == "faiss":
        import faiss

        faiss.omp_set_num_threads(torch.get_num_threads())  # same thread budget as torch (privacy.threads)
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(np.ascontiguousarray(base.cpu().numpy(), dtype=np.float32))
        sims, idx = index.search(np.ascontiguousarray(queries.cpu().numpy(), dtype=np.float32), k)
        return sims.astype(np.float32), idx.astype(np.int64)
    if backend != "torch":
        raise ValueError(f"unknown knn backend {backend!r} (torch | faiss)")
    dev = torch.device(device)
    b = base.to(dev)
    rows = _rows_per_chunk(nb, chunk_mb)
    out_s = np.empty((nq, k), np.float32)
    out_i = np.empty((nq, k), np.int64)
    for start in range(0, nq, rows):
        q = queries[start:start + rows].to(dev)
        s, i = torch.topk(q @ b.T, k, dim=1)
        out_s[start:start + len(q)] = s.cpu().numpy()
        out_i[start:start + len(q)] = i.cpu().numpy()
    return out_s, out_i


@dataclass
class NeighbourCache:
    """Neighbour lists computed once per (representation, query set, base set) and reused by every score.

    A request for ``k`` neighbours is served from a cached list with ``k' >= k`` (a prefix of an exact top-k'
    list is the exact top-k list).
    """

    chunk_mb: float = 256.0
    backend: str = "auto"
    device: str = "cpu"
    _store: dict = field(default_factory=dict)
    _vectors: dict = field(default_factory=dict)

    def add(self, rep: str, name: str, vectors: torch.Tensor) -> None:
        """Register normalised vectors ``(N, D)`` of set ``name`` in representation ``rep``."""
        self._vectors[(rep, name)] = vectors

    def vectors(self, rep: str, name: str) -> torch.Tensor:
        return self._vectors[(rep, name)]

    def get(self, rep: str, query: str, base: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(sims, idx)`` ``(Nq, k)`` of set ``query`` against set ``base`` in representation ``rep``."""
        key = (rep, query, base)
        hit = self._store.get(key)
        if hit is None or hit[0].shape[1] < min(k, len(self._vectors[(rep, base)])):
            hit = knn(self._vectors[(rep, query)], self._vectors[(rep, base)], k, self.chunk_mb,
                      self.backend, self.device)
            self._store[key] = hit
        return hit[0][:, :k], hit[1][:, :k]


def cosine_to_distance(sims: np.ndarray) -> np.ndarray:
    """Euclidean distance between unit vectors from their cosine: ``sqrt(2 - 2 cos)`` (>= 0)."""
    return np.sqrt(np.clip(2.0 - 2.0 * np.asarray(sims, np.float64), 0.0, None)).astype(np.float32)


def memory_estimate_mb(n_query: int, n_base: int, k: int, chunk_mb: float) -> float:
    """Peak extra memory of :func:`knn` (similarity block + outputs), for the scale benchmark's notes."""
    rows = min(n_query, _rows_per_chunk(n_base, chunk_mb))
    return (rows * n_base * 4 + n_query * k * 12) / 2**20
