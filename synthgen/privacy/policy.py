"""Policy: does a neighbouring slice of a training patient count as a copy? (issue 15; ``privacy.policy``)

Decision (default ``neighbour_slice: copy``): **yes**. A synthetic image that looks like slice ``k +- 1`` of a
training patient reproduces that patient's anatomy (organ shapes, lesions, implants) as much as slice ``k``
does, and a person who knows the patient recognises it; the thresholds are therefore calibrated on *other*
patients' images (the holdout) only, and anything closer to a training patient than unseen patients get is
flagged, whichever of the patient's slices it matches. This is also the only rule a detector can apply without
knowing slice positions.

``neighbour_slice: allowed`` is for projects whose data governance treats per-slice reproduction as the risk
and accepts anatomy shared with a training patient (e.g. public volumes): each rule's threshold is raised to
the ``neighbour_quantile`` of the same score between a training image and the *other* images of its own patient
(its neighbouring slices; the ratio rule lowered likewise), so a sample is flagged only when it is closer to a
training image than that image's own neighbours typically are. Needs patient ids with several images per
patient in the training set; without any the setting changes nothing (recorded in the report).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .calibrate import Threshold
from .refine import refine_pairs
from .scores import ScoreSettings, align

POLICIES = ("copy", "allowed")


def neighbour_scores(train01: np.ndarray, patient_ids: np.ndarray, e_train: torch.Tensor, mats,
                     settings: ScoreSettings, max_rows: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Scores of training images against the other images of their own patient (their neighbouring slices).

    For at most ``max_rows`` seeded training images whose patient has other images: ``pearson`` / ``ssim``
    (aligned search, and refinement when enabled, against up to ``settings.candidates`` same-patient images
    nearest in the embedding), ``embedding`` (max cosine to them) and ``ratio`` (cosine distance to the nearest
    own-patient image over that to the nearest other patient's image). Empty arrays when no patient has two
    images. ``e_train``: ``(N, d)`` unit embedding vectors of ``train01``.
    """
    pid = np.asarray(patient_ids)
    _, inv, cnt = np.unique(pid, return_inverse=True, return_counts=True)
    rows = np.flatnonzero(cnt[inv] > 1)
    if not len(rows):
        return {k: np.zeros(0) for k in ("pearson", "ssim", "embedding", "ratio")}
    rows = np.sort(np.random.default_rng(seed).permutation(rows)[:max_rows])
    e = e_train.float()
    sims = (e[torch.as_tensor(rows)] @ e.T).numpy()                          # (M, N)
    same = inv[rows][:, None] == inv[None, :]
    sims_own = np.where(same, sims, -np.inf)
    sims_own[np.arange(len(rows)), rows] = -np.inf
    k = min(settings.candidates, int(same.sum(1).max()) - 1)
    cand = np.argsort(-sims_own, axis=1)[:, :k]
    cand = np.where(np.take_along_axis(sims_own, cand, 1) > -np.inf, cand, -1)
    al = align(train01[rows], train01, cand, mats, settings)
    pear = al["pearson"].astype(np.float64)
    if settings.refine.top > 0 and train01.ndim == 4:
        r = refine_pairs(train01[rows], train01, al["top_index"][:, :settings.refine.top], settings.refine)
        pear = np.maximum(pear, r.max(1))
    own = sims_own.max(1)
    other = np.where(same, -np.inf, sims).max(1)
    d_own, d_other = np.sqrt(np.clip(2 - 2 * own, 0, None)), np.sqrt(np.clip(2 - 2 * other, 0, None))
    return {"pearson": pear, "ssim": al["ssim"].astype(np.float64), "embedding": own,
            "ratio": d_own / np.maximum(d_other, 1e-12)}


def apply_policy(thresholds: dict[str, Threshold], neighbours: dict[str, np.ndarray], policy: str,
                 quantile: float) -> tuple[dict[str, Threshold], dict[str, Any]]:
    """Thresholds under ``policy`` (``copy``: unchanged) and a JSON-ready record of what was done."""
    if policy not in POLICIES:
        raise ValueError(f"privacy.policy.neighbour_slice must be one of {POLICIES}, got {policy!r}")
    info: dict[str, Any] = {"neighbour_slice": policy}
    if policy == "copy":
        return thresholds, info
    n = len(neighbours["pearson"])
    info.update(quantile=quantile, n_training_images_with_neighbours=int(n))
    if not n:
        info["note"] = "no training patient has two images: nothing changed"
        return thresholds, info
    out, floors = dict(thresholds), {}
    for r, th in thresholds.items():
        s = np.asarray(neighbours[r], np.float64)
        s = s[np.isfinite(s)]
        if not len(s):
            continue
        if th.higher_is_copy:
            f = float(np.quantile(s, quantile))
            out[r] = replace(th, overall=max(th.overall, f), per_class={c: max(v, f) for c, v in th.per_class.items()})
        else:
            f = float(np.quantile(s, 1.0 - quantile))
            out[r] = replace(th, overall=min(th.overall, f), per_class={c: min(v, f) for c, v in th.per_class.items()})
        floors[r] = f
    info["neighbour_floors"] = floors
    return out, info
