"""Deterministic image geometry shared by the readers."""

from __future__ import annotations

import numpy as np


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Zero-pad ``(C, H, W)`` symmetrically to ``(C, S, S)`` with ``S = max(H, W)``: resizing then
    keeps the aspect ratio instead of stretching anatomy."""
    c, h, w = image.shape
    s = max(h, w)
    if h == w:
        return image
    out = np.zeros((c, s, s), dtype=image.dtype)
    top, left = (s - h) // 2, (s - w) // 2
    out[:, top:top + h, left:left + w] = image
    return out


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """``(C, H, W)`` float in ``[0, 1]`` -> ``(C, size, size)`` float32 in ``[0, 1]``.

    Pads to square, then resizes with antialiased bilinear interpolation (area-like when shrinking).
    """
    image = pad_to_square(np.asarray(image, dtype=np.float32))
    if image.shape[-1] == size:
        return image
    # Imported here: torch takes seconds to import, and a stage that fails on bad input should say so fast.
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(image))[None]
    out = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp_(0.0, 1.0).numpy()


def quantize(images: np.ndarray, dtype: str) -> np.ndarray:
    """Float ``[0, 1]`` -> ``uint8`` (x255) or ``uint16`` (x65535), rounded (not truncated)."""
    top = {"uint8": 255, "uint16": 65535}[dtype]
    return np.rint(np.clip(images, 0.0, 1.0) * top).astype(dtype)


def dequantize(images: np.ndarray) -> np.ndarray:
    """``uint8``/``uint16`` -> float32 in ``[0, 1]`` (inverse of :func:`quantize`)."""
    top = np.iinfo(images.dtype).max
    return images.astype(np.float32) / np.float32(top)
