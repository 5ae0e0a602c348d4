"""2D images or 3D volumes: what ``meta.json`` says about the array shapes every stage reads and writes.

Contract (issue 17, shared by the readers, the model and the export): ``meta.json`` may hold ``dims`` (2 or 3;
absent = 2). Images are ``(N, C, H, W)`` with ``H = W = image_size``; volumes are ``(N, C, D, H, W)`` with
``(D, H, W) = volume_shape`` (axis order z/axial, y, x in canonical RAS voxel order) and ``spacing``
``[sz, sy, sx]`` in mm.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import InputError


def spatial_dims(meta: Mapping[str, Any]) -> int:
    """``meta["dims"]`` (2 when absent); anything but 2 or 3 is an :class:`InputError`."""
    dims = meta.get("dims", 2)
    if dims not in (2, 3):
        raise InputError(None, f"meta.json: dims must be 2 or 3, got {dims!r}")
    return int(dims)


def image_shape(meta: Mapping[str, Any]) -> tuple[int, ...]:
    """Per-sample shape the prepared data promise: ``(C, S, S)`` (``S = image_size``) for 2D, ``(C, D, H, W)``
    (``volume_shape``, else ``image_size`` on every axis) for 3D."""
    c = int(meta["channels"])
    if spatial_dims(meta) == 2:
        s = int(meta["image_size"])
        return (c, s, s)
    vol = meta.get("volume_shape")
    if vol is None:
        s = int(meta["image_size"])
        vol = (s, s, s)
    if len(vol) != 3:
        raise InputError(None, f"meta.json: volume_shape must be [D, H, W], got {vol!r}")
    return (c, *(int(v) for v in vol))


def axial_preview(images: np.ndarray) -> np.ndarray:
    """Images ``(N, C, H, W)`` unchanged; volumes ``(N, C, D, H, W)`` -> their central axial slices
    ``(N, C, H, W)`` (``D // 2``), for sample grids and other 2D previews."""
    images = np.asarray(images)
    if images.ndim == 5:
        return images[:, :, images.shape[2] // 2]
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) or (N, C, D, H, W), got {images.shape}")
    return images


__all__ = ["axial_preview", "image_shape", "spatial_dims"]
