"""Membership inference: could an attacker tell training images from unseen ones using the generator?

Two attacks, both scored as ROC AUC (0.5 = chance) and TPR at 1% FPR over members (training images) vs
non-members (reference images: real, unseen, from the training distribution; the audit draws the same number
of each per class, :func:`synthgen.privacy.dcr.class_matched_pairs`, so a generator that memorized nothing
gives AUC 0.5), equal numbers of each:

* distance-based (any generator, black box): a record is more likely a member the closer the synthetic
  cohort comes to it: ``score(x) = max_j cos(e(x), e(s_j))`` over synthetic samples ``s_j``;
* loss-based (diffusion models, white box): members are denoised better, ``score(x) = -error_fn(x)``, where
  ``error_fn(images01, labels) -> (N,)`` is e.g. ``DiffusionModule.denoising_error`` with fixed timesteps and
  seeds (any callable with that signature plugs in).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from .mia_gate import rank_tpr

ErrorFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def attack_metrics(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float = 0.01) -> dict[str, float]:
    """AUC and TPR at ``fpr`` for scores where larger means "more likely a member".

    Returns ``auc`` in ``[0, 1]``, ``tpr_at_fpr`` in ``[0, 1]`` (ROC interpolated at ``fpr``), ``fpr``,
    ``n_members``, ``n_nonmembers``, and the rank threshold the TPR gate tests
    (:func:`~synthgen.privacy.mia_gate.rank_tpr`: ``threshold_rank``, ``n_above``, ``tpr_at_threshold``,
    ``fpr_threshold``, ``fpr_empirical``).
    """
    m, n = np.asarray(member_scores, np.float64), np.asarray(nonmember_scores, np.float64)
    if len(m) == 0 or len(n) == 0:
        return {"auc": float("nan"), "tpr_at_fpr": float("nan"), "fpr": fpr, "n_members": len(m),
                "n_nonmembers": len(n)}
    y = np.r_[np.ones(len(m)), np.zeros(len(n))]
    s = np.r_[m, n]
    auc = float(roc_auc_score(y, s))
    f, t, _ = roc_curve(y, s)
    tpr = float(np.interp(fpr, f, t))
    return {"auc": auc, "tpr_at_fpr": tpr, "fpr": fpr, "n_members": int(len(m)), "n_nonmembers": int(len(n)),
            **rank_tpr(m, n, fpr)}


def distance_attack(member_sims: np.ndarray, nonmember_sims: np.ndarray, fpr: float = 0.01) -> dict[str, float]:
    """Distance-based attack from each record's max similarity to the synthetic cohort (``(N,)`` each)."""
    return {"attack": "distance", **attack_metrics(member_sims, nonmember_sims, fpr)}


def loss_attack(error_fn: ErrorFn, members01: np.ndarray, member_labels: np.ndarray,
                nonmembers01: np.ndarray, nonmember_labels: np.ndarray, fpr: float = 0.01) -> dict[str, float]:
    """Loss-based attack: ``score = -error_fn(images01, labels)`` (lower denoising error = member)."""
    em = np.asarray(error_fn(members01, member_labels), np.float64).reshape(-1)
    en = np.asarray(error_fn(nonmembers01, nonmember_labels), np.float64).reshape(-1)
    if len(em) != len(members01) or len(en) != len(nonmembers01):
        raise ValueError("error_fn must return one error per image")
    return {"attack": "loss", **attack_metrics(-em, -en, fpr)}


def denoising_error_fn(module, timesteps: tuple[int, ...] = (50, 200, 500), seed: int = 0,
                       batch: int = 256) -> ErrorFn:
    """Adapt a diffusion module's ``denoising_error(images01, labels, timesteps, seeds)`` (tensors) to an
    :data:`ErrorFn`: the mean error over the fixed ``timesteps``, noise seeded by ``seed`` and the row index,
    so members and non-members are scored with identical noise draws. Images go through the network in
    chunks of ``batch`` (memory only: each row's noise depends on its seed alone, so chunking changes nothing).
    """
    import torch

    def error_fn(images01: np.ndarray, labels: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(images01, np.float32))
        y = torch.as_tensor(np.asarray(labels, np.int64))
        seeds = torch.arange(len(x), dtype=torch.int64) + int(seed) * 1_000_000
        out = np.zeros(len(x), np.float64)
        for lo in range(0, len(x), max(int(batch), 1)):
            sl = slice(lo, lo + max(int(batch), 1))
            for t in timesteps:
                tt = torch.full((len(x[sl]),), int(t), dtype=torch.long)
                out[sl] += torch.as_tensor(module.denoising_error(x[sl], y[sl], tt, seeds[sl]),
                                           dtype=torch.float64).numpy()
        return (out / max(len(timesteps), 1)).astype(np.float32)

    return error_fn
