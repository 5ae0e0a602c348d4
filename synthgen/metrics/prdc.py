"""Precision, recall, density and coverage (Naeem et al. 2020, k-nearest-neighbour manifolds).

With ``r_k(x)`` the distance from a sample to its k-th nearest neighbour within its own set
(itself excluded), real set ``R`` and fake set ``F``:

* precision = share of fake samples inside some real ball ``B(r, r_k(r))`` (fidelity);
* recall    = share of real samples inside some fake ball ``B(f, r_k(f))`` (diversity);
* density   = ``1/(k |F|) * sum_f #{r : f in B(r, r_k(r))}`` (about 1 when the sets match, > 1 when
  fakes crowd into dense real regions);
* coverage  = share of real samples whose own ball contains at least one fake.

Distances are Euclidean in the domain feature space; exact (chunked) since our sets are small.
"""

from __future__ import annotations

import numpy as np
import torch


def _pairwise(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    return torch.cdist(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64))


def _kth_radius(x: np.ndarray, k: int, chunk: int = 2048) -> torch.Tensor:
    # k+1 smallest includes the zero self-distance; chunked so memory stays O(chunk * N).
    return torch.cat([_pairwise(x[i:i + chunk], x).topk(k + 1, dim=1, largest=False).values[:, k]
                      for i in range(0, len(x), chunk)])


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """Euclidean distances ``(len(a), len(b))`` float64 between the rows of ``a`` ``(N, D)`` and ``b`` ``(M, D)``."""
    return _pairwise(a, b)


def kth_radius(x: np.ndarray, k: int) -> torch.Tensor:
    """``(N,)`` float64: distance from each row of ``x`` ``(N, D)`` to its ``k``-th nearest other row (``k < N``)."""
    return _kth_radius(x, k)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """PRDC of ``fake`` ``(M, D)`` against ``real`` ``(N, D)``; each set needs more than ``k`` samples.

    Returns:
        ``{"precision", "recall", "density", "coverage"}``; precision, recall, coverage in ``[0, 1]``,
        density in ``[0, N/k]``.
    """
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} samples per set, got {len(real)} real, {len(fake)} fake")
    r_real = _kth_radius(real, k)
    r_fake = _kth_radius(fake, k)
    d = _pairwise(real, fake)  # (N, M)
    inside_real = d < r_real[:, None]  # fake j inside real ball i
    precision = inside_real.any(dim=0).double().mean()
    recall = (d < r_fake[None, :]).any(dim=1).double().mean()
    density = inside_real.double().sum() / (k * len(fake))
    coverage = (d.min(dim=1).values < r_real).double().mean()
    return {"precision": float(precision), "recall": float(recall), "density": float(density),
            "coverage": float(coverage)}


def prdc_per_class(real: np.ndarray, real_labels: np.ndarray, fake: np.ndarray, fake_labels: np.ndarray,
                   class_names: list[str], k: int = 5) -> dict[str, dict[str, float] | None]:
    """PRDC within each class (both sets restricted to it); ``None`` where a set has ``<= k`` samples."""
    out: dict[str, dict[str, float] | None] = {}
    for c, name in enumerate(class_names):
        r, f = real[real_labels == c], fake[fake_labels == c]
        out[name] = prdc(r, f, k) if len(r) > k and len(f) > k else None
    return out


__all__ = ["kth_radius", "pairwise_distances", "prdc", "prdc_per_class"]
