"""Decisions: per-sample flags (which rule fired, which training image matched) and cohort-level gates.

Per sample, rules in priority order (the first that fires is *the* rule; all that fired are recorded):

* ``exact``     -- identical to a training image after quantization;
* ``pearson``   -- aligned pixel Pearson >= calibrated threshold (floor 0.95);
* ``ssim``      -- aligned SSIM >= calibrated threshold;
* ``embedding`` -- copy-detection cosine >= calibrated threshold;
* ``ratio``     -- NN distance ratio < calibrated threshold (ceiling 1/3).

Flagged samples are dropped. Cohort gates (limits in ``privacy.gates``) fail the *model*, not just samples:
no exact copy may remain in the exported cohort (a hard limit, 0 by default); every other gate compares the
cohort with a null that real unseen images meet (DCR and membership inference on the kept cohort):

* ``flagged_share``: the share of flagged samples may exceed the share of real unseen reference images
  flagged by the same rules and thresholds (class-matched) by ``flagged_margin``, and the policy limit
  ``max_flagged_share`` in any case; fails when the excess over the larger of the two is significant
  (one-sided test, ``flagged_alpha``; :mod:`synthgen.privacy.flagged`);
* ``dcr``: the synthetic share closer to train than to the holdout may exceed the same share of the real
  reference set by at most ``dcr_margin``; fails when the excess is significant (one-sided two-proportion
  test, ``dcr_alpha``; :func:`~synthgen.privacy.dcr.dcr_difference_test`);
* ``mia_auc`` / ``mia_tpr_at_1pct_fpr`` (and ``mia_loss_*``): members are training images, non-members the
  reference set (real unseen images of the training distribution, class-matched), so a generator that
  memorized nothing gives AUC 0.5 and TPR@1%FPR 0.01 in expectation; the literature limits (AUC 0.60,
  TPR 3%) apply as they are, and each fails only when the excess is significant at ``mia_alpha`` under a
  null valid at the audit's sizes (:mod:`synthgen.privacy.mia_gate`: Hanley-McNeil for the AUC, the exact
  rank null of the few-non-member threshold for the TPR). The real-data control (the same distance attack
  with the holdout in place of the synthetic cohort; :func:`~synthgen.privacy.audit.cohort_stats`) is
  reported next to the gate and never changes its limit or value.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .calibrate import Threshold
from .flagged import flagged_share_test, min_failing_share
from .mia_gate import auc_test, tpr_test

RULES = ("exact", "pearson", "ssim", "embedding", "ratio")
_INDEX_KEY = {"pearson": "pearson_index", "ssim": "ssim_index", "embedding": "embedding_index",
              "ratio": "ratio_index"}


def flag_samples(scores: Mapping[str, np.ndarray], exact_match: np.ndarray, labels: np.ndarray,
                 thresholds: Mapping[str, Threshold]
                 ) -> tuple[np.ndarray, list[list[str]], np.ndarray, np.ndarray, np.ndarray]:
    """Apply the rules.

    Args:
        scores: per-sample scores and matched indices (:func:`~synthgen.privacy.scores.query_scores`).
        exact_match: ``(N,)`` training index of an exact copy, ``-1`` when none.
        labels: ``(N,)`` classes (per-class thresholds).
        thresholds: calibrated thresholds of ``pearson``, ``ssim``, ``embedding``, ``ratio``.

    Returns:
        ``flags`` ``(N,)`` bool; ``fired`` list of rule lists; ``rule`` ``(N,)`` str (first rule, ``""``);
        ``matched`` ``(N,)`` int64 training index of that rule (``-1``); ``score`` ``(N,)`` float32 its score
        (NaN when nothing fired).
    """
    n = len(exact_match)
    fires = {"exact": np.asarray(exact_match) >= 0}
    for r in RULES[1:]:
        fires[r] = thresholds[r].fires(scores[r], labels)
    flags = np.zeros(n, dtype=bool)
    rule = np.full(n, "", dtype="<U16")
    matched = np.full(n, -1, dtype=np.int64)
    score = np.full(n, np.nan, dtype=np.float32)
    for r in RULES:
        new = fires[r] & ~flags
        rule[new] = r
        matched[new] = exact_match[new] if r == "exact" else scores[_INDEX_KEY[r]][new]
        score[new] = 1.0 if r == "exact" else scores[r][new]
        flags |= fires[r]
    fired = [[r for r in RULES if fires[r][i]] for i in range(n)]
    return flags, fired, rule, matched, score


def _gate(value: float, limit: float, ok: bool, **extra: Any) -> dict:
    return {"value": None if value is None or not np.isfinite(value) else float(value), "limit": float(limit),
            "passed": bool(ok), **extra}


def flagged_gate(stats: Mapping[str, Any], gates: Mapping[str, Any]) -> dict:
    """The flagged-share gate: the synthetic flagged share against the flag rate of real unseen reference
    images scored with the same rules and thresholds (:func:`~synthgen.privacy.flagged.flagged_share_test`).

    Reads ``stats["per_class"]`` (synthetic ``{c: {n, flagged}}``) and ``stats["flagged_ref"]["per_class"]``
    (the reference's; absent or empty: the limit is ``max_flagged_share``). Fails when the share exceeds the
    limit with one-sided ``p < flagged_alpha``. ``min_failing_share`` (the smallest share of this cohort's
    size that would fail) shows the gate's resolution: wide when the reference is small.
    """
    lim = float(gates.get("max_flagged_share", 0.02))
    margin, alpha = float(gates.get("flagged_margin", 0.01)), float(gates.get("flagged_alpha", 0.05))
    t = flagged_share_test(stats["per_class"], (stats.get("flagged_ref") or {}).get("per_class", {}), lim, margin,
                           int(gates.get("flagged_ref_min_class", 50)))
    share = stats["flagged_share"]
    fail = bool(share > t["limit"] and t["p_value"] < alpha)
    return _gate(share, t["limit"], not fail, n_flagged=stats["n_flagged"], share_ref=t["share_ref"],
                 share_ref_matched=t["share_ref_matched"], n_ref=t["n_ref"], n_flagged_ref=t["n_flagged_ref"],
                 limit_from=t["limit_from"], p_value=t["p_value"], alpha=alpha, max_flagged_share=lim,
                 margin=margin, constant_rule_passed=bool(share <= lim),
                 min_failing_share=min_failing_share(t["n_syn"], t["limit"], t["limit_variance"], alpha),
                 rule=f"fail if share > max({lim}, share_ref_matched + {margin}) with one-sided p < {alpha} "
                      "(share_ref: flag rate of real unseen reference images, same rules and thresholds, "
                      "class-matched)")


def cohort_gates(stats: Mapping[str, Any], gates: Mapping[str, Any]) -> dict[str, dict]:
    """Evaluate the cohort-level gates on the audit statistics (limits: ``privacy.gates``)."""
    g = {k: gates[k] for k in gates}
    out: dict[str, dict] = {}
    exact = stats["exact_copies_after_drop"]
    out["exact_copies"] = _gate(exact, g.get("max_exact_copies", 0), exact <= g.get("max_exact_copies", 0))
    out["flagged_share"] = flagged_gate(stats, g)
    if stats.get("n_kept", 1) == 0:
        out["kept_samples"] = _gate(0, 1, False, note="every sample was flagged")
    dcr = stats.get("dcr", {})
    margin, alpha = float(g.get("dcr_margin", 0.05)), float(g.get("dcr_alpha", 0.05))
    diff, p_dcr = dcr.get("difference", float("nan")), dcr.get("p_value", 1.0)
    dcr_fail = bool(np.isfinite(diff) and diff > margin and p_dcr < alpha)
    out["dcr"] = _gate(diff, margin, not dcr_fail, share_syn=dcr.get("share_syn"), share_ref=dcr.get("share_ref"),
                       share_ref_matched=dcr.get("share_ref_matched"), p_value=p_dcr, alpha=alpha,
                       rule=f"fail if share_syn - share_ref > {margin} with one-sided two-proportion p < {alpha} "
                            "(share_ref: real unseen reference images, class-matched)")
    for key in ("mia", "mia_loss"):
        m = stats.get(key)
        if not m or m.get("applicable") is False:   # e.g. the loss attack on a GAN: reported, not gated
            continue
        out.update(mia_gates(key, m, g, stats.get("mia_control") if key == "mia" else None))
    return out


def mia_gates(key: str, m: Mapping[str, Any], g: Mapping[str, Any], control: Mapping[str, Any] | None
              ) -> dict[str, dict]:
    """``{key}_auc`` and ``{key}_tpr_at_1pct_fpr`` from attack metrics ``m``
    (:func:`~synthgen.privacy.membership.attack_metrics`).

    Each fails only when the value exceeds its limit and the one-sided test of ``H0: value <= limit`` has
    ``p < mia_alpha`` (:mod:`synthgen.privacy.mia_gate`). The AUC gate reports ``min_failing_auc`` (its
    resolution at these sizes); without member/non-member counts it falls back to the bare limit. The TPR
    gate reports the threshold's achieved FPR (``fpr_threshold``) and ``fpr_resolvable`` (false with fewer
    than 100 non-members: 1% FPR cannot be resolved, the test is against the coarser threshold).
    """
    auc, tpr = m.get("auc", float("nan")), m.get("tpr_at_fpr", float("nan"))
    alim, tlim = float(g.get("mia_max_auc", 0.6)), float(g.get("mia_max_tpr_at_1pct_fpr", 0.03))
    malpha = float(g.get("mia_alpha", 0.05))
    extra = {"nonmembers": m.get("nonmembers", "reference")}
    if control:  # reported next to the gate, never subtracted from it
        extra["control_auc"] = control.get("auc")
    n_mem, n_non = int(m.get("n_members", 0) or 0), int(m.get("n_nonmembers", 0) or 0)
    at = auc_test(auc, n_mem, n_non, alim, malpha)
    if np.isfinite(at["p_value"]):
        auc_fail = bool(np.isfinite(auc) and auc > alim and at["p_value"] < malpha)
        rule = f"fail if AUC > {alim} with one-sided p < {malpha} (Hanley-McNeil se at {alim})"
    else:
        auc_fail = not bool(np.isfinite(auc) and auc <= alim)
        rule = f"fail if AUC > {alim} (no member/non-member counts recorded: no test)"
    out = {f"{key}_auc": _gate(auc, alim, not auc_fail, p_value=at["p_value"], alpha=malpha,
                               min_failing_auc=at["min_failing_auc"], n_members=n_mem, n_nonmembers=n_non,
                               rule=rule, **extra)}
    tt = tpr_test(dict(m), tlim, float(m.get("fpr", 0.01) or 0.01))
    p_tpr = tt["p_value"]
    tpr_fail = bool(np.isfinite(tpr) and tpr > tlim and np.isfinite(p_tpr) and p_tpr < malpha)
    out[f"{key}_tpr_at_1pct_fpr"] = _gate(
        tpr, tlim, not tpr_fail, alpha=malpha, **tt,
        rule=f"fail if TPR > {tlim} and one-sided p < {malpha} (members above the threshold against {tt['null']})")
    return out
