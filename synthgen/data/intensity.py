"""Intensity rules that map scanner values to ``[0, 1]`` (shared by the DICOM and NIfTI readers)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def linear_window(x: np.ndarray, center: float, width: float, out: np.ndarray | None = None) -> np.ndarray:
    """DICOM's linear VOI window (PS3.3 C.11.2.1.2.1), scaled to ``[0, 1]`` instead of the output range.

    ``y = clip(((x - (c - 0.5)) / (w - 1) + 0.5), 0, 1)``; widths below 1 are treated as 1 (a hard threshold).

    Args:
        x: any shape, values after the modality LUT (e.g. Hounsfield units).
        out: a float32 array of ``x``'s shape to write into (may be ``x`` itself: in place, no allocation).
    Returns:
        float32 array of ``x``'s shape in ``[0, 1]``.
    """
    w = max(float(width) - 1.0, 1e-6)
    y = np.subtract(x, np.float32(float(center) - 0.5), out=out, dtype=np.float32)
    y /= np.float32(w)
    y += np.float32(0.5)
    return np.clip(y, 0.0, 1.0, out=y)


def minmax(x: np.ndarray, lo: float | None = None, hi: float | None = None,
           out: np.ndarray | None = None) -> np.ndarray:
    """Linear map of ``[lo, hi]`` (default: the array's own min and max) to ``[0, 1]``; a constant image -> 0.

    ``out`` as in :func:`linear_window`. Returns float32 of ``x``'s shape.
    """
    lo = float(np.min(x)) if lo is None else float(lo)
    hi = float(np.max(x)) if hi is None else float(hi)
    if hi <= lo:
        y = np.zeros(np.shape(x), dtype=np.float32) if out is None else out
        y[...] = 0
        return y
    y = np.subtract(x, np.float32(lo), out=out, dtype=np.float32)
    y /= np.float32(hi - lo)
    return np.clip(y, 0.0, 1.0, out=y)


def check_window(window: Sequence[float] | None) -> tuple[float, float] | None:
    """Validate ``data.window = [center, width]``; None stays None."""
    if window is None:
        return None
    from ..errors import ConfigError

    try:
        c, w = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ConfigError("data.window", f"expected [center, width], got {window!r}") from None
    if not w > 0:
        raise ConfigError("data.window", f"width must be > 0, got {w}")
    return c, w
