"""Intra-class diversity: mean MS-SSIM over random image pairs of one class.

Mode collapse shows as synthetic pairs being *more* alike than real pairs (higher MS-SSIM). We use
torchmetrics' functional MS-SSIM. Its default (5 scales, 11-px Gaussian) needs images of at least
~161 px; for small images we keep the kernel (default 5 px, sigma 1) and use the largest number of
scales ``n`` that torchmetrics accepts (``size >= 2**n`` and ``size // (n-1)**2 > kernel - 1``),
with the first ``n`` standard scale weights (Wang et al. 2003) renormalised to sum to 1: at 28 px
that is 3 scales (28, 14, 7 px). ``normalize="relu"`` clips negative contrast terms, which would
otherwise give NaN under fractional exponents for unrelated image pairs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as _ms_ssim

STANDARD_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def fit_betas(size: int, kernel_size: int, betas: Sequence[float] = STANDARD_BETAS) -> tuple[float, ...]:
    """The first ``n`` scale weights (renormalised) for the largest ``n`` that fits ``size`` px."""
    for n in range(len(betas), 0, -1):
        if size >= 2 ** n and size // max(1, n - 1) ** 2 > kernel_size - 1:
            b = np.asarray(betas[:n], dtype=np.float64)
            return tuple(float(x) for x in b / b.sum())
    raise ValueError(f"images of {size} px are too small for MS-SSIM with a {kernel_size}-px kernel")


def ms_ssim_pairs(a: torch.Tensor, b: torch.Tensor, kernel_size: int = 5, sigma: float = 1.0,
                  betas: Sequence[float] = STANDARD_BETAS, batch: int = 512) -> np.ndarray:
    """MS-SSIM of each pair ``(a[i], b[i])``; ``a, b`` ``(P, C, H, W)`` float in ``[0, 1]`` -> ``(P,)``. Volumes
    ``(P, C, D, H, W)`` get torchmetrics' 3D MS-SSIM (Gaussian window and pooling over all three axes)."""
    fitted = fit_betas(min(a.shape[2:]), kernel_size, betas)
    out = []
    for i in range(0, len(a), batch):
        v = _ms_ssim(a[i:i + batch].float(), b[i:i + batch].float(), kernel_size=kernel_size, sigma=sigma,
                     betas=fitted, data_range=1.0, reduction="none", normalize="relu")
        out.append(v.double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def random_pairs(n: int, n_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` random index pairs ``(i, j)``, ``i != j``, from ``range(n)`` (``n >= 2``)."""
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n
    return i, j


def intra_class_ms_ssim(images: torch.Tensor, labels: np.ndarray, class_names: list[str], pairs: int,
                        seed: int, kernel_size: int = 5, sigma: float = 1.0,
                        betas: Sequence[float] = STANDARD_BETAS) -> dict[str, float | None]:
    """Mean MS-SSIM over ``pairs`` random same-class pairs, per class (``None`` with < 2 images).

    Args:
        images: ``(N, C, H, W)`` or volumes ``(N, C, D, H, W)``, float in ``[0, 1]``.
        labels: ``(N,)`` int class indices.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, float | None] = {}
    for c, name in enumerate(class_names):
        idx = np.flatnonzero(np.asarray(labels) == c)
        if len(idx) < 2:
            out[name] = None
            continue
        i, j = random_pairs(len(idx), pairs, rng)
        out[name] = float(ms_ssim_pairs(images[idx[i]], images[idx[j]], kernel_size, sigma, betas).mean())
    return out


__all__ = ["STANDARD_BETAS", "fit_betas", "intra_class_ms_ssim", "ms_ssim_pairs", "random_pairs"]
