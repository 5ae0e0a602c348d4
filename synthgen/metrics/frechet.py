"""Frechet distance (FD) and kernel inception distance (KID) between two feature sets.

Both work on features from the project's own domain extractor (``features.py``), never Inception.
We compute them from feature arrays rather than through torchmetrics' ``FrechetInceptionDistance`` /
``KernelInceptionDistance`` classes: those wrap an image->feature network and keep running sums, while
here the same cached features feed FD, KID and PRDC, and the real-vs-real floor reuses them.

FD (Heusel et al. 2017), Gaussians fitted to each set::

    FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr( (S1 S2)^(1/2) )

``tr((S1 S2)^(1/2))`` is the sum of square roots of the eigenvalues of ``S1 S2`` (real and >= 0 for
PSD ``S1, S2``; tiny negative/imaginary parts from round-off are clipped), the same route torchmetrics
takes; float64 throughout.

KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
``k(x, y) = (x.y / d + 1)^3``, averaged over ``subsets`` random subsets of ``subset_size`` per set.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, D)`` -> mean ``(D,)`` and unbiased covariance ``(D, D)``, float64 (needs ``N >= 2``)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need (N>=2, D) features, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_from_stats(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """FD between N(mu1, s1) and N(mu2, s2); ``>= 0`` up to round-off (clipped at 0)."""
    diff = mu1 - mu2
    eig = np.linalg.eigvals(s1 @ s2)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0.0, None)).sum()
    fd = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt
    return float(max(fd, 0.0))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD between feature sets ``a`` ``(N, D)`` and ``b`` ``(M, D)``."""
    return frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_distance(a: np.ndarray, b: np.ndarray, subsets: int = 50, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID between ``a`` ``(N, D)`` and ``b`` ``(M, D)``: mean and std of the unbiased MMD^2 over subsets.

    ``subset_size`` is capped at ``min(N, M)``; needs at least 2 samples per set.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs >= 2 samples per set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        vals.append(off - 2.0 * kxy.mean())
    v = np.asarray(vals)
    return float(v.mean()), float(v.std())


__all__ = ["frechet_distance", "frechet_from_stats", "gaussian_stats", "kernel_distance"]
