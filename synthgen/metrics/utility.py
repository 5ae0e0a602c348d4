"""Task utility: train the shared classifier on each arm's data, test on the real test split.

Arms (identical recipe and step budget, several seeds):

* ``trtr``           train real (uniform sampling), test real;
* ``trtr_balanced``  real with class-balanced oversampling: the honest baseline a team would use;
* ``tstr``           train synthetic only;
* ``trs``            real + synthetic pooled (uniform over images);
* ``trs_balanced``   real oversampled + synthetic: every class gets the same mass, split inside a
  class between real and synthetic images by ``synthetic_share`` (all real where a class has no
  synthetic images, all synthetic where it has no real ones);
* ``full_reference`` real training split before the rare-class cut (``train_uncut``), uniform: the
  ceiling the rare-class gain is measured against (only when ``data.rare`` is active).

Scores: accuracy, balanced accuracy (mean recall over classes present in test), macro AUROC
(one-vs-rest, over classes with positives and negatives in test), per-class recall and the confusion
matrix. Synthetic data is worth shipping where ``trs_balanced`` beats ``trtr_balanced``.

For a rare-class run the evaluate stage adds ``trs_balanced`` on the synthetic images *of the rare classes only*
(``trs_balanced_rare``; :func:`only_classes`), so the rare-class effect is not mixed with what the common
classes' ordinary synthetic images do to the classifier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from .classifier import Recipe, class_balanced_weights, predict_proba, train_classifier

ARMS = ("trtr", "trtr_balanced", "tstr", "trs", "trs_balanced", "full_reference")


@dataclass
class LabeledImages:
    """``images`` ``(N, C, H, W)`` float32 in ``[0, 1]`` and ``labels`` ``(N,)`` int64."""

    images: torch.Tensor
    labels: np.ndarray


def only_classes(data: LabeledImages, classes: Sequence[int]) -> LabeledImages:
    """The images of ``data`` whose label is in ``classes`` (order kept; may be empty)."""
    keep = np.isin(data.labels, np.asarray(list(classes), dtype=np.int64))
    return LabeledImages(data.images[torch.from_numpy(keep)], data.labels[keep])


def arm_pool(arm: str, real: LabeledImages, synthetic: LabeledImages, n_classes: int,
             synthetic_share: float = 0.5, uncut: LabeledImages | None = None
             ) -> tuple[torch.Tensor, np.ndarray, np.ndarray | None]:
    """Training images, labels and per-image sampling weights (``None`` = uniform) of one arm."""
    if arm == "trtr":
        return real.images, real.labels, None
    if arm == "trtr_balanced":
        return real.images, real.labels, class_balanced_weights(real.labels, n_classes)
    if arm == "tstr":
        return synthetic.images, synthetic.labels, None
    if arm == "full_reference":
        if uncut is None:
            raise ValueError("full_reference needs the uncut training split")
        return uncut.images, uncut.labels, None
    images = torch.cat([real.images, synthetic.images])
    labels = np.concatenate([real.labels, synthetic.labels])
    if arm == "trs":
        return images, labels, None
    if arm == "trs_balanced":
        return images, labels, _mixed_balanced_weights(real.labels, synthetic.labels, n_classes, synthetic_share)
    raise ValueError(f"unknown utility arm {arm!r}; known: {ARMS}")


def _mixed_balanced_weights(real_y: np.ndarray, syn_y: np.ndarray, n_classes: int, share: float) -> np.ndarray:
    nr = np.bincount(real_y, minlength=n_classes).astype(np.float64)
    ns = np.bincount(syn_y, minlength=n_classes).astype(np.float64)
    # Share of a class's mass that goes to its synthetic images.
    s = np.where(ns == 0, 0.0, np.where(nr == 0, 1.0, share))
    w_real = np.where(nr > 0, (1.0 - s) / np.maximum(nr, 1), 0.0)
    w_syn = np.where(ns > 0, s / np.maximum(ns, 1), 0.0)
    return np.concatenate([w_real[real_y], w_syn[syn_y]])


def score(probs: np.ndarray, y_true: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Scores of ``(N, n_classes)`` probabilities against ``(N,)`` true labels.

    Returns:
        ``accuracy``, ``balanced_accuracy``, ``auroc_macro`` (floats in ``[0, 1]``), ``recall``
        (list per class, ``nan`` where the class is absent from test) and ``confusion``
        (``(n_classes, n_classes)`` counts, rows = true class).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    pred = probs.argmax(axis=1)
    conf = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(conf, (y_true, pred), 1)
    support = conf.sum(axis=1)
    recall = np.where(support > 0, np.diag(conf) / np.maximum(support, 1), np.nan)
    aucs = [roc_auc_score(y_true == c, probs[:, c]) for c in range(n_classes) if 0 < support[c] < len(y_true)]
    return {"accuracy": float((pred == y_true).mean()), "balanced_accuracy": float(np.nanmean(recall)),
            "auroc_macro": float(np.mean(aucs)) if aucs else float("nan"), "recall": recall.tolist(),
            "confusion": conf}


def run_arms(arms: Sequence[str], seeds: Sequence[int], real: LabeledImages, synthetic: LabeledImages,
             test: LabeledImages, n_classes: int, recipe: Recipe, synthetic_share: float = 0.5,
             uncut: LabeledImages | None = None, progress: Callable[[int], Any] | None = None
             ) -> dict[str, list[dict[str, Any]]]:
    """Train and score every ``(arm, seed)``; returns ``{arm: [score per seed]}``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for arm in arms:
        x, y, w = arm_pool(arm, real, synthetic, n_classes, synthetic_share, uncut)
        out[arm] = []
        for seed in seeds:
            model = train_classifier(x, y, w, n_classes, recipe, int(seed), progress)
            out[arm].append(score(predict_proba(model, test.images, recipe.bf16), test.labels, n_classes))
    return out


def paired_interval(diffs: Sequence[float], confidence: float) -> dict[str, Any]:
    """Mean, std (ddof 1) and two-sided Student t ``confidence`` interval of paired per-seed differences."""
    d = np.asarray(diffs, dtype=np.float64)
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * sd / math.sqrt(len(d)))
    m = float(d.mean())
    return {"mean": m, "std": sd, "half_width": half, "ci": [m - half, m + half], "per_seed": d.tolist()}


def _ms(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(np.mean(v)), "std": float(np.std(v))}


def summarize(runs: dict[str, list[dict[str, Any]]], class_names: list[str]) -> dict[str, Any]:
    """Mean and std over seeds of every scalar score and of per-class recall, per arm."""
    out: dict[str, Any] = {}
    for arm, scores in runs.items():
        rec = np.asarray([s["recall"] for s in scores], dtype=np.float64)
        out[arm] = {k: _ms([s[k] for s in scores]) for k in ("accuracy", "balanced_accuracy", "auroc_macro")}
        out[arm]["recall"] = {name: _ms(rec[:, c]) for c, name in enumerate(class_names)}
    return out


#: ``rare`` section label -> utility arm, in the order a reader compares them.
RARE_ARMS = {"real_only": "trtr", "oversampling": "trtr_balanced", "synthetic": "trs_balanced",
             "raw_synthetic": "trs_balanced_raw", "boost_plan": "trs_balanced_rare", "reference": "full_reference"}
#: The arms compared against oversampling (``<label>_minus_oversampling``, ``<label>_paired``).
_VERSUS_OVERSAMPLING = ("synthetic", "raw_synthetic", "boost_plan")


def rare_gain(summary: dict[str, Any], rare: Sequence[str], runs: dict[str, list[dict[str, Any]]] | None = None,
              class_names: Sequence[str] | None = None, confidence: float = 0.95) -> dict[str, Any]:
    """Rare-class recall (mean over ``rare``) and balanced accuracy of every arm in :data:`RARE_ARMS` that ran.

    ``real_only`` (``trtr``), ``oversampling`` (``trtr_balanced``), ``synthetic`` (``trs_balanced`` on the whole
    evaluated cohort), ``raw_synthetic`` (``trs_balanced_raw``: the rare classes' candidates before curation and the
    plan, when ``evaluate.raw_cohort`` is set), ``boost_plan`` (``trs_balanced_rare``: the rare classes' images of
    the evaluated cohort only, i.e. what the boost plan shipped) and ``reference`` (``full_reference``). When the
    reference ran: the share of the gap between real-only and the reference each closes
    (``(arm - real_only) / (reference - real_only)``; ``None`` when the gap is under 0.01). Against oversampling:
    the difference of means (``<label>_minus_oversampling``) and, given the per-seed ``runs`` and ``class_names``
    with >= 2 seeds, the paired per-seed difference with its Student t ``confidence`` interval
    (``<label>_paired``: the arms share seeds, so seed ``i`` of both starts from the same weights).
    """
    out: dict[str, Any] = {}
    for label, arm in RARE_ARMS.items():
        if arm not in summary:
            continue
        rec = [summary[arm]["recall"][c]["mean"] for c in rare]
        out[label] = {"rare_recall": float(np.mean(rec)),
                      "balanced_accuracy": summary[arm]["balanced_accuracy"]["mean"]}
    if "reference" in out and "real_only" in out:
        for metric in ("rare_recall", "balanced_accuracy"):
            lo, hi = out["real_only"][metric], out["reference"][metric]
            for label in ("oversampling", *_VERSUS_OVERSAMPLING):
                if label in out:
                    gap = hi - lo
                    out[label][f"gap_closed_{metric}"] = None if gap < 0.01 else (out[label][metric] - lo) / gap
    if "oversampling" not in out:
        return out
    idx = [list(class_names).index(c) for c in rare] if class_names is not None else []
    for label in _VERSUS_OVERSAMPLING:
        if label not in out:
            continue
        out[f"{label}_minus_oversampling"] = {
            m: out[label][m] - out["oversampling"][m] for m in ("rare_recall", "balanced_accuracy")}
        a, b = (runs or {}).get(RARE_ARMS[label]), (runs or {}).get("trtr_balanced")
        if a and b and idx and len(a) == len(b) >= 2:
            pa, pb = _rare_per_seed(a, idx), _rare_per_seed(b, idx)
            out[f"{label}_paired"] = {m: paired_interval(pa[m] - pb[m], confidence) for m in pa}
    return out


def _rare_per_seed(scores: list[dict[str, Any]], idx: Sequence[int]) -> dict[str, np.ndarray]:
    """Per seed: mean recall over the class indices ``idx`` and balanced accuracy."""
    return {"rare_recall": np.array([np.nanmean(np.asarray(s["recall"])[list(idx)]) for s in scores]),
            "balanced_accuracy": np.array([s["balanced_accuracy"] for s in scores])}


__all__ = ["ARMS", "RARE_ARMS", "LabeledImages", "arm_pool", "only_classes", "paired_interval", "rare_gain", "run_arms",
           "score", "summarize"]
