"""Near-duplicates across splits: how many images of one split have a near-copy in another.

For an ordered pair of splits ``(first, second)``, every image of ``second`` is scored by its nearest
neighbour in ``first`` under pixel Pearson correlation (over all ``C * H * W`` values of the image)::

    r(x, y) = <z(x), z(y)>,   z(x) = (x - mean(x)) / ||x - mean(x)||_2

and counts as having a near-copy when ``max_y r(x, y) >= threshold``. A constant image (no variance) has no
defined correlation; it scores 0 against everything.

The reported ``share`` is the fraction of ``second`` with a near-copy in ``first``; ``median_nn_pearson`` is
the median of the nearest-neighbour correlations (how alike the splits are in general). Adjacent slices of
one scan or repeated images of one patient show up here when a split was cut image by image.

Speed and memory: one chunked float32 matmul per reference split (queries in chunks of ``chunk_queries``
rows against the reference in chunks of ``chunk_reference`` rows, so the similarity block in memory is bounded
whatever the split sizes). BloodMNIST, all six pairs, one thread: 5.9 CPU-s. A bf16 prefilter with a float32
re-score was measured at 3.1 CPU-s but made the reported medians depend on the CPU (native bf16 or not), so the
float32 path is the only one: the same prepared data on any machine gives the same table.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

PAIRS: tuple[tuple[str, str], ...] = (("train", "val"), ("train", "test"), ("train", "holdout"),
                                      ("val", "test"), ("val", "holdout"), ("test", "holdout"))



def standardize(images: np.ndarray) -> torch.Tensor:
    """``(N, C, H, W)`` (any real dtype) -> ``(N, C*H*W)`` float32 rows with mean 0 and L2 norm 1
    (all-zero rows for constant images), so that a dot product is the Pearson correlation."""
    images = np.asarray(images)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32).reshape(len(images),
                                                                                 int(np.prod(images.shape[1:]))))
    scale = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    x = x - x.mean(dim=1, keepdim=True)
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    # Constant images: float32 rounding of the mean leaves ~1e-7 of the image's own scale, not exactly 0.
    flat = norm <= 1e-5 * scale
    return torch.where(flat, 0.0, x / norm.clamp_min(1e-30))



def _max_exact(q: torch.Tensor, reference: torch.Tensor, chunk: int) -> torch.Tensor:
    """``(len(q),)`` float32 maxima of ``q @ reference.T``, one reference block at a time."""
    best = torch.full((len(q),), float("-inf"))
    for r0 in range(0, len(reference), chunk):
        best = torch.maximum(best, (q @ reference[r0:r0 + chunk].T).max(dim=1).values)
    return best


def nearest_pearson(queries: torch.Tensor, reference: torch.Tensor, chunk_queries: int = 1024,
                    chunk_reference: int = 16384) -> np.ndarray:
    """``(Nq,)`` float32: for each standardized query row, its largest correlation with a reference row.

    Args:
        queries: ``(Nq, D)`` rows from :func:`standardize`.
        reference: ``(Nr, D)`` rows from :func:`standardize`; ``Nr == 0`` gives ``-inf`` for every query.
        chunk_queries, chunk_reference: block sizes; the similarity block holds at most their product floats.
    """
    nq, nr = len(queries), len(reference)
    if nq == 0 or nr == 0:
        return np.full(nq, -np.inf, dtype=np.float32)
    return torch.cat([_max_exact(queries[q0:q0 + chunk_queries], reference, chunk_reference)
                      for q0 in range(0, nq, chunk_queries)]).numpy()


def near_duplicate_table(splits: Mapping[str, np.ndarray], threshold: float,
                         pairs: Sequence[tuple[str, str]] = PAIRS) -> dict:
    """Near-copy shares for every pair of splits present in ``splits``.

    Args:
        splits: split name -> ``(N, C, H, W)`` images (one shape for all).
        threshold: Pearson correlation at and above which a nearest neighbour counts as a near-copy.
        pairs: ordered ``(first, second)`` pairs: images of ``second`` are looked up in ``first``.

    Returns:
        ``{"threshold_pearson", "pairs": {"first-second": {"n", "near_copies", "share",
        "median_nn_pearson"}}}``; shares and medians rounded to 4 decimals (``None`` when a split is empty).
    """
    z = {name: standardize(x) for name, x in splits.items()}
    table: dict[str, dict] = {}
    by_first: dict[str, list[str]] = {}
    for a, b in pairs:
        if a in z and b in z:
            by_first.setdefault(a, []).append(b)
    for a, seconds in by_first.items():
        # One pass over the reference for all its query splits.
        nn = nearest_pearson(torch.cat([z[b] for b in seconds]), z[a])
        start = 0
        for b in seconds:
            r = nn[start:start + len(z[b])]
            start += len(z[b])
            ok = len(r) > 0 and len(z[a]) > 0
            hits = int((r >= threshold).sum()) if ok else 0
            table[f"{a}-{b}"] = {"n": int(len(r)), "near_copies": hits,
                                 "share": round(hits / len(r), 4) if ok else None,
                                 "median_nn_pearson": round(float(np.median(r)), 4) if ok else None}
    ordered = {f"{a}-{b}": table[f"{a}-{b}"] for a, b in pairs if f"{a}-{b}" in table}
    return {"threshold_pearson": float(threshold), "pairs": ordered}


def format_table(result: Mapping) -> str:
    """One log line per pair: ``train-test: 12/3421 (0.35%) near-copies, median nn r 0.71``."""
    lines = [f"near-duplicates across splits (nearest-neighbour pixel Pearson >= {result['threshold_pearson']}):"]
    for name, row in result["pairs"].items():
        if row["share"] is None:
            lines.append(f"  {name}: (empty split)")
        else:
            lines.append(f"  {name}: {row['near_copies']}/{row['n']} ({100 * row['share']:.2f}%) near-copies, "
                         f"median nn r {row['median_nn_pearson']:.3f}")
    return "\n".join(lines)
