"""Sample grid: per class, one row of real training images above rows of synthetic ones (PNG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..io import atomic_path


def _tile(images: np.ndarray, columns: int, pad: int, h: int, w: int) -> np.ndarray:
    """``(n <= columns, C, h, w)`` float in ``[0, 1]`` -> ``(h, columns * (w + pad), 3)``; empty slots white."""
    row = np.ones((h, columns * (w + pad), 3), np.float32)
    for i, img in enumerate(images[:columns]):
        rgb = np.repeat(img[:1], 3, 0) if img.shape[0] != 3 else img
        row[:, i * (w + pad): i * (w + pad) + w] = np.transpose(rgb, (1, 2, 0))
    return row


def first_per_class(labels: np.ndarray, n_classes: int, k: int) -> list[np.ndarray]:
    """Indices of the first ``k`` rows of each class (deterministic choice)."""
    return [np.flatnonzero(labels == c)[:k] for c in range(n_classes)]


def sample_grid(path: str | os.PathLike, class_names: Sequence[str], real: np.ndarray, real_labels: np.ndarray,
                synthetic: np.ndarray, synthetic_labels: np.ndarray, columns: int = 10, rows: int = 2,
                title: str = "") -> Path:
    """Write the grid PNG (atomically, byte-stable: no timestamp metadata).

    Args:
        real, synthetic: ``(N, C, H, W)`` float in ``[0, 1]`` (1 or 3 channels shown as grey/RGB; others
            show channel 0).
        real_labels, synthetic_labels: ``(N,)`` int labels into ``class_names``.
        columns: images per row; rows: synthetic rows per class.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = real.shape[2:] if len(real) else synthetic.shape[2:]
    pad = max(1, w // 14)
    n = len(class_names)
    real_idx = first_per_class(real_labels, n, columns)
    syn_idx = first_per_class(synthetic_labels, n, columns * rows)
    bands, ticks, names = [], [], []
    y = 0
    for c, name in enumerate(class_names):
        parts = [("real", _tile(real[real_idx[c]], columns, pad, h, w))]
        for r in range(rows):
            rows_c = synthetic[syn_idx[c][r * columns:(r + 1) * columns]]
            parts.append(("synthetic" if r == 0 else "", _tile(rows_c, columns, pad, h, w)))
        for label, strip in parts:
            bands.append(strip)
            bands.append(np.ones((pad, strip.shape[1], 3), np.float32))
            if label:
                ticks.append(y + h / 2)
                names.append(f"{name}: {label}")
            y += h + pad
        bands.append(np.ones((3 * pad, bands[-1].shape[1], 3), np.float32))
        y += 3 * pad
    canvas = np.concatenate(bands)
    scale = 0.02 * max(1.0, 28 / h)
    fig, ax = plt.subplots(figsize=(2.2 + canvas.shape[1] * scale, 0.6 + canvas.shape[0] * scale), dpi=100)
    ax.imshow(np.clip(canvas, 0, 1), interpolation="nearest")
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path
