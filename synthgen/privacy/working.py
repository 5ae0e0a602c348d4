"""The audit's working resolution: every per-sample score is computed on images shrunk to at most ``size`` px.

Why (issue 17): the audit's cost per (query, training image) pair grows with the pixel count -- the copy encoder
(three stride-2 convolutions), the low-resolution k-NN vectors and the aligned grid search (``T`` warps x
``(2s+1)^2`` shifts per candidate) are all linear in ``H * W`` -- so a 128 px audit cost ~20x the 28 px one per
pair, and the copy encoder's training as much again (``benchmarks/privacy_size.py``, docs/privacy.md "At size").
Copy detection does not need the fine detail: a copy of a training image, however edited, is still its copy
after both are area-averaged to 32 px, and every threshold is calibrated on holdout->train scores measured at the
same resolution. So the encoder is trained, and the shortlist, alignment and SSIM run, on images area-averaged
to ``privacy.working_size`` (longest side; aspect kept; never upsampled: 28 px MedMNIST runs unchanged). The exact
-copy check hashes the stored full-resolution pixels, and reports show full-resolution images.

Volumes ``(N, C, D, H, W)`` (``data.dims=3``) likewise, with ``privacy.volume.working_size`` per axis.

Memory: the input is reduced ``chunk`` images at a time, so the only full-resolution arrays are the caller's.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from .inputs import ImageSet


def working_shape(spatial: tuple[int, ...], size: int | None) -> tuple[int, ...]:
    """Spatial shape at working size ``size`` (longest side, aspect kept; ``None`` or larger: unchanged)."""
    spatial = tuple(int(s) for s in spatial)
    longest = max(spatial)
    if size is None or longest <= int(size):
        return spatial
    f = int(size) / longest
    return tuple(max(1, int(round(s * f))) for s in spatial)


@torch.no_grad()
def to_working(images01: np.ndarray, size: int | None, chunk: int = 512) -> np.ndarray:
    """``(N, C, *spatial)`` float ``[0, 1]`` (2 or 3 spatial axes) -> area-averaged to :func:`working_shape`.

    Area averaging (``adaptive_avg_pool``; an exact block mean when the factor is an integer, e.g. 128 -> 32) is
    the anti-aliased downsampling: each output pixel is the mean of the input pixels it covers. Returns the input
    itself (no copy) when nothing shrinks; else float32 in ``[0, 1]``, ``chunk`` images reduced at a time.
    """
    spatial = tuple(images01.shape[2:])
    target = working_shape(spatial, size)
    if target == spatial:
        return images01
    pool = F.adaptive_avg_pool2d if len(spatial) == 2 else F.adaptive_avg_pool3d
    out = np.empty((len(images01), images01.shape[1], *target), np.float32)
    for i in range(0, len(images01), chunk):
        x = torch.as_tensor(np.asarray(images01[i:i + chunk], np.float32))
        out[i:i + len(x)] = pool(x, target).clamp(0, 1).numpy()
    return out


def at_working(s: ImageSet, size: int | None) -> ImageSet:
    """``s`` with its images at working size ``size`` (:func:`to_working`; ``s`` itself when nothing shrinks)."""
    if working_shape(s.images.shape[2:], size) == tuple(s.images.shape[2:]):
        return s
    return replace(s, images=to_working(s.images, size))
