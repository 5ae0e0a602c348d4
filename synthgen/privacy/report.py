"""The audit's outputs for people: ``report.json`` (every flag and how every threshold was calibrated), the
summary metrics (``metrics/privacy.json``), and the nearest-pairs PNG grid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, write_json
from .audit import AuditResult
from .inputs import ImageSet


def _finite(x: Any) -> Any:
    """NaN/Inf -> None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def build_report(result: AuditResult, train: ImageSet, holdout: ImageSet, synthetic: ImageSet,
                 class_names: list[str] | None = None, timings: bool = True) -> dict[str, Any]:
    """JSON-ready report: passed, gates, flagged samples, thresholds (+ calibration), statistics, duplicates.

    ``timings=False`` leaves out wall times (pipeline outputs must be byte-identical across runs).
    """
    flagged = [
        {"index": int(i), "label": int(synthetic.labels[i]), "rule": str(result.rule[i]),
         "rules": result.rules_fired[i], "matched_train_index": int(result.matched[i]),
         "score": float(result.score[i]),
         "scores": {k: float(result.scores[k][i]) for k in ("pearson", "ssim", "embedding", "ratio")}}
        for i in np.flatnonzero(result.flags)
    ]
    stats = dict(result.stats)
    if class_names:
        stats["per_class"] = {class_names[c] if c < len(class_names) else str(c): v
                              for c, v in stats["per_class"].items()}
    return _finite({
        "passed": result.passed,
        "failed_gates": [k for k, g in result.gates.items() if not g["passed"]],
        "gates": result.gates,
        "flagged": flagged,
        "thresholds": {k: t.describe(class_names) for k, t in result.thresholds.items()},
        "cohort": stats,
        "native_duplicates": result.duplicates,
        "inputs": {"train": train.source, "holdout": holdout.source, "synthetic": synthetic.source,
                   "reference": stats.get("reference", {}).get("source"),
                   "image_shape": list(synthetic.images.shape[1:])},
        **({"timings_s": {k: round(v, 2) for k, v in result.timings.items()}} if timings else {}),
    })


def metrics_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The flat numbers tracked by ``dvc metrics`` (no per-sample lists, no timings)."""
    c = report["cohort"]
    out = {
        "passed": report["passed"], "n_synthetic": c["n_synthetic"], "n_flagged": c["n_flagged"],
        "n_kept": c["n_kept"], "flagged_share": c["flagged_share"], "by_rule": c["by_rule"],
        "flagged_share_ref": report["gates"]["flagged_share"].get("share_ref_matched"),
        "flagged_limit": report["gates"]["flagged_share"].get("limit"),
        "flagged_p_value": report["gates"]["flagged_share"].get("p_value"),
        "flagged_min_failing_share": report["gates"]["flagged_share"].get("min_failing_share"),
        "exact_copies_before_drop": c["exact_copies_before_drop"],
        "holdout_false_flag_rate": c["holdout_false_flag_rate"],
        "dcr_share_syn": c["dcr"].get("share_syn"), "dcr_share_ref": c["dcr"].get("share_ref_matched"),
        "dcr_difference": c["dcr"].get("difference"), "dcr_p_value": c["dcr"].get("p_value"),
        "mia_auc": c["mia"].get("auc"), "mia_tpr_at_1pct_fpr": c["mia"].get("tpr_at_fpr"),
        "mia_control_auc": c.get("mia_control", {}).get("auc"),
        "mia_control_null_met": c.get("mia_control", {}).get("null_met"),
        "reference": c.get("reference", {}).get("origin"),
        "thresholds": {k: v["overall"] for k, v in report["thresholds"].items()},
        "native_duplicates": {"within_train_pairs": report["native_duplicates"]["within_train_pairs"],
                              "holdout_in_train": len(report["native_duplicates"]["holdout_in_train"])},
    }
    if "mia_loss" in c:
        out["mia_loss_applicable"] = c["mia_loss"].get("applicable", True)
        out["mia_loss_auc"] = c["mia_loss"].get("auc")
        out["mia_loss_tpr_at_1pct_fpr"] = c["mia_loss"].get("tpr_at_fpr")
        out["mia_loss_n_members"] = c["mia_loss"].get("n_members")
    return _finite(out)


def write_report(path: str | os.PathLike, report: dict[str, Any]) -> None:
    write_json(path, report)


def _show(img: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W[, 3])`` for imshow; a volume ``(C, D, H, W)`` shows its central axial slice."""
    if img.ndim == 4:
        img = img[:, img.shape[1] // 2]
    return img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0))


def nearest_pairs_png(path: str | os.PathLike, result: AuditResult, train: ImageSet, synthetic: ImageSet,
                      top: int = 16) -> None:
    """PNG grid of the ``top`` most similar (synthetic, training) pairs by aligned Pearson, side by side.

    Each pair is titled with the synthetic index, its Pearson / SSIM and the rule that fired (if any).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = result.scores["pearson"]
    order = np.lexsort((np.arange(len(p)), -p))[:top]
    order = [i for i in order if result.scores["pearson_index"][i] >= 0]
    cols = 4
    rows = max(1, int(np.ceil(len(order) / cols)))
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * 1.3, rows * 1.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    grey = synthetic.images.shape[1] == 1
    for n, i in enumerate(order):
        r, c = divmod(n, cols)
        j = int(result.scores["pearson_index"][i])
        for k, (img, who) in enumerate(((synthetic.images[i], f"syn {i}"), (train.images[j], f"train {j}"))):
            ax = axes[r, 2 * c + k]
            ax.imshow(_show(img), cmap="gray" if grey else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(who, fontsize=6)
        tag = result.rule[i] or "kept"
        axes[r, 2 * c].text(0, -0.35, f"r={p[i]:.3f} ssim={result.scores['ssim'][i]:.2f} {tag}",
                            transform=axes[r, 2 * c].transAxes, fontsize=6,
                            color="red" if result.flags[i] else "black")
    fig.suptitle("Most similar synthetic / training pairs (aligned Pearson)", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
