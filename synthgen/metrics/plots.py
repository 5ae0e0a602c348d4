"""PNG figures of the evaluate stage (``dvc plots`` shows them): per-class recall by arm and the
confusion matrices. Written with the Agg backend and no metadata timestamp, so identical numbers
give identical bytes."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..io import atomic_path

_PNG_META = {"Software": None}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def per_class_recall_png(path: str | os.PathLike, summary: dict[str, Any], class_names: list[str],
                         rare: list[str] | None = None) -> None:
    """Grouped bars: recall (mean over seeds, std as error bar) per class, one bar per arm."""
    plt = _plt()
    arms = list(summary)
    n, k = len(class_names), len(arms)
    width = 0.8 / max(k, 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * n + 2), 4.0), dpi=100)
    for a, arm in enumerate(arms):
        mean = [summary[arm]["recall"][c]["mean"] for c in class_names]
        std = [summary[arm]["recall"][c]["std"] for c in class_names]
        ax.bar(np.arange(n) + (a - (k - 1) / 2) * width, mean, width, yerr=std, capsize=2, label=arm)
    labels = [f"{c}*" if rare and c in rare else c for c in class_names]
    ax.set_xticks(np.arange(n), labels, rotation=30, ha="right")
    ax.set_ylim(0, 1.2)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("recall on real test (mean +- std over seeds)")
    ax.set_title("Per-class recall by training arm" + (" (* = rare class)" if rare else ""))
    ax.legend(fontsize=8, ncol=k, loc="upper center", frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=_PNG_META)
    plt.close(fig)


def confusion_png(path: str | os.PathLike, confusions: dict[str, np.ndarray], class_names: list[str]) -> None:
    """One row-normalised confusion matrix per arm (counts summed over seeds; rows = true class)."""
    plt = _plt()
    arms = list(confusions)
    cols = min(3, len(arms))
    rows = int(np.ceil(len(arms) / cols))
    n = len(class_names)
    side = max(3.2, 0.45 * n + 1.5)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows), dpi=100, squeeze=False)
    for ax in axes.flat[len(arms):]:
        ax.axis("off")
    for ax, arm in zip(axes.flat, arms):
        cm = np.asarray(confusions[arm], dtype=np.float64)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(n), class_names, rotation=90, fontsize=6)
        ax.set_yticks(range(n), class_names, fontsize=6)
        ax.set_title(arm, fontsize=9)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata=_PNG_META)
    plt.close(fig)


__all__ = ["confusion_png", "per_class_recall_png"]
