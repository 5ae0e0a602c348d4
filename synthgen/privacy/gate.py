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
  TPR 3%) apply as they are. The real-data control (the same distance attack with the holdout in place of
  the synthetic cohort; :func:`~synthgen.privacy.audit.cohort_stats`) is reported next to the gate and
  never changes its limit or value.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from scipy.stats import binomtest

from .calibrate import Threshold
from .flagged import flagged_share_test, min_failing_share

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


def tpr_p_value(tpr: float, n_members: int, limit: float) -> float:
    """One-sided binomial p-value of ``H0: TPR <= limit`` given ``round(tpr * n_members)`` detected members.

    The TPR at 1% FPR of a small audit (the demo's 120 members vs 120 non-members) rests on the one or two
    highest non-member scores, so a single unlucky tail value moves it by several points; like the DCR gate,
    the TPR gate fails only when the excess over the limit is significant. With thousands of members the test
    has the power to fail a real leak at a few points above the limit.
    """
    if not (n_members > 0 and np.isfinite(tpr)):
        return float("nan")
    k = int(round(tpr * n_members))
    return float(binomtest(k, n_members, limit, alternative="greater").pvalue) if k > 0 else 1.0


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
        auc, tpr = m.get("auc", float("nan")), m.get("tpr_at_fpr", float("nan"))
        alim, tlim = float(g.get("mia_max_auc", 0.6)), float(g.get("mia_max_tpr_at_1pct_fpr", 0.03))
        extra = {"nonmembers": m.get("nonmembers", "reference")}
        if key == "mia" and stats.get("mia_control"):  # reported next to the gate, never subtracted from it
            extra["control_auc"] = stats["mia_control"].get("auc")
        out[f"{key}_auc"] = _gate(auc, alim, bool(np.isfinite(auc) and auc <= alim), **extra)
        malpha = float(g.get("mia_alpha", 0.05))
        p_tpr = tpr_p_value(tpr, int(m.get("n_members", 0)), tlim)
        tpr_fail = bool(np.isfinite(tpr) and tpr > tlim and p_tpr < malpha)
        out[f"{key}_tpr_at_1pct_fpr"] = _gate(tpr, tlim, not tpr_fail, p_value=p_tpr, alpha=malpha,
                                              rule=f"fail if TPR > {tlim} and one-sided binomial p < {malpha}")
    return out
