"""The flagged-share gate against real unseen data: how often are real images the model never saw flagged?

Per-sample thresholds are calibrated per rule at a high percentile of holdout->train scores (99.7th, tail
extrapolated: :mod:`synthgen.privacy.calibrate`), so on paper a genuinely new image is flagged by one rule with
probability 0.3%. In practice the rate on real unseen data is higher and not known in advance: four rules fire
independently (pearson, ssim, embedding, ratio), a tail estimated from a few hundred holdout images is noisy
(the empirical 99.9th percentile is their maximum), and a holdout shifted from the training distribution (other scanners or sites) sits further from
train than unseen in-distribution images do. Measured on PneumoniaMNIST with a 100-image holdout shifted to
``x ** 1.3`` (``benchmarks/privacy_reference.py``): two sets of 500 real unseen images were flagged at 2.7%
and 2.8%, so a fixed 2% limit failed data that copied nothing.

So the reference set ``R`` (real unseen images of the training distribution, the same null as the DCR and
membership gates) is scored with exactly the same rules, thresholds and prefilter as the synthetic cohort,
and its flag rate is the null:

    limit = max(max_flagged_share, share_ref + flagged_margin)
    z     = (share_syn - limit) / sqrt(v_syn + v_ref [only when the reference term sets the limit])
    fail  if share_syn > limit and p = 1 - Phi(z) < flagged_alpha

``share_ref`` is class-matched like the DCR's (:func:`~synthgen.privacy.dcr.dcr_difference_test`): per-class
reference rates weighted by the synthetic cohort's class shares ``pi_c``; a class with fewer than
``min_class_n`` reference images (or none) takes the pooled reference rate (as a class with few holdout
images takes the overall threshold), so one false flag among two images of a rare class cannot lift the limit
by ``pi_c / 2``. Variances are Agresti-Caffo adjusted binomial ones (never zero); the pooled term's weight is
the summed ``pi_c`` of the classes that use it (they share one estimate). The constant limit has no sampling
error, so the reference variance only counts when ``share_ref + margin`` sets the limit.

The reference flags are statistics only: they never drop a sample and are never exported (the report lists
counts, no reference image).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from scipy.stats import norm

from .dcr import _adjusted


def allocate(available: np.ndarray, weights: np.ndarray, cap: int) -> np.ndarray:
    """Split ``cap`` draws over classes in proportion to ``weights``, never more than ``available`` per class.

    Water-filling: what a class cannot take is shared among the others by their weights; the last draws go
    by largest remainder. Returns ``(C,)`` int64 counts, ``sum <= cap`` (``== cap`` when enough are available
    in classes of positive weight).
    """
    avail = np.asarray(available, np.int64)
    w = np.asarray(weights, np.float64)
    k = np.zeros(len(avail), np.int64)
    while True:
        left = int(cap - k.sum())
        open_ = (k < avail) & (w > 0)
        if left <= 0 or not open_.any():
            return k
        raw = left * np.where(open_, w, 0.0) / w[open_].sum()
        add = np.minimum(np.floor(raw).astype(np.int64), avail - k)
        if add.sum() == 0:        # fewer draws left than open classes: one each, largest share first
            order = np.lexsort((np.arange(len(raw)), -raw))
            add[[c for c in order if open_[c]][:left]] = 1
        k += add


def reference_rows(labels_ref: np.ndarray, labels_syn: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Sorted seeded rows of the reference to score: all of them when there are at most ``cap``, else ``cap``
    rows allocated over the synthetic cohort's classes by its class mix (:func:`allocate`; reference classes
    the cohort lacks are not drawn, their weight in the class-matched share being 0)."""
    yr, ys = np.asarray(labels_ref).reshape(-1), np.asarray(labels_syn).reshape(-1)
    if len(yr) <= cap:
        return np.arange(len(yr), dtype=np.int64)
    classes = np.unique(yr)
    k = allocate(np.array([(yr == c).sum() for c in classes]), np.array([(ys == c).mean() for c in classes]),
                 int(cap))
    if k.sum() == 0:              # no synthetic class in the reference: a plain seeded subsample
        return np.sort(np.random.default_rng(seed).permutation(len(yr))[:cap]).astype(np.int64)
    rng = np.random.default_rng(seed)
    rows = [rng.permutation(np.flatnonzero(yr == c))[:n] for c, n in zip(classes, k)]
    return np.sort(np.concatenate(rows)).astype(np.int64)


def class_counts(flags: np.ndarray, labels: np.ndarray) -> dict[int, dict[str, int]]:
    """``{class: {"n": images, "flagged": flagged images}}``."""
    f, y = np.asarray(flags, bool), np.asarray(labels).reshape(-1)
    return {int(c): {"n": int((y == c).sum()), "flagged": int((f & (y == c)).sum())} for c in np.unique(y)}


def flagged_share_test(syn: Mapping[Any, Mapping[str, int]], ref: Mapping[Any, Mapping[str, int]],
                       max_flagged_share: float, margin: float, min_class_n: int = 50) -> dict[str, Any]:
    """One-sided test of ``share_syn > max(max_flagged_share, share_ref_matched + margin)`` (module doc).

    Args:
        syn, ref: per-class counts ``{class: {"n", "flagged"}}`` of the synthetic cohort and the scored
            reference images (:func:`class_counts`; keys may be ints or their strings).
        max_flagged_share: the policy limit (the limit when real data is flagged at less than it - margin).
        margin: tolerated excess of the synthetic share over the reference share.
        min_class_n: classes with fewer reference images use the pooled reference rate.

    Returns:
        ``share_syn``, ``n_syn``, ``n_flagged_syn``, ``share_ref`` (pooled), ``n_ref``, ``n_flagged_ref``,
        ``share_ref_matched`` (NaN without reference images), ``limit``, ``limit_variance`` (the reference
        term's, 0 for the policy limit), ``limit_from`` (``max_flagged_share`` or ``reference``), ``z``,
        ``p_value``, ``per_class`` ``{c: {pi, share_syn, share_ref, n_ref, pooled}}``.
    """
    s = {int(c): (int(v["n"]), int(v["flagged"])) for c, v in syn.items() if int(v["n"]) > 0}
    r = {int(c): (int(v["n"]), int(v["flagged"])) for c, v in ref.items() if int(v["n"]) > 0}
    ns, ks = sum(n for n, _ in s.values()), sum(k for _, k in s.values())
    nr, kr = sum(n for n, _ in r.values()), sum(k for _, k in r.values())
    out: dict[str, Any] = {"n_syn": ns, "n_flagged_syn": ks, "n_ref": nr, "n_flagged_ref": kr,
                           "max_flagged_share": float(max_flagged_share), "margin": float(margin)}
    if ns == 0:
        return {**out, "share_syn": float("nan"), "share_ref": float("nan"), "share_ref_matched": float("nan"),
                "limit": float(max_flagged_share), "limit_variance": 0.0, "limit_from": "max_flagged_share",
                "z": float("nan"), "p_value": 1.0, "per_class": {}}
    share_syn = ks / ns
    v_syn = _adjusted(ks, ns)[1]
    matched, v_ref, w_pool, per_class = float("nan"), 0.0, 0.0, {}
    if nr:
        pooled = kr / nr
        matched = 0.0
        for c, (n_c, k_c) in sorted(s.items()):
            pi = n_c / ns
            own = c in r and r[c][0] >= min_class_n
            p_c = r[c][1] / r[c][0] if own else pooled
            if own:
                v_ref += pi * pi * _adjusted(r[c][1], r[c][0])[1]
            else:
                w_pool += pi
            matched += pi * p_c
            per_class[c] = {"pi": pi, "share_syn": k_c / n_c, "share_ref": p_c,
                            "n_ref": r.get(c, (0, 0))[0], "pooled": not own}
        v_ref += w_pool * w_pool * _adjusted(kr, nr)[1]
    from_ref = bool(np.isfinite(matched) and matched + margin > max_flagged_share)
    limit = matched + margin if from_ref else float(max_flagged_share)
    v_lim = v_ref if from_ref else 0.0
    z = (share_syn - limit) / np.sqrt(v_syn + v_lim)
    return {**out, "share_syn": share_syn, "share_ref": kr / nr if nr else float("nan"),
            "share_ref_matched": matched, "limit": float(limit), "limit_variance": float(v_lim),
            "limit_from": "reference" if from_ref else "max_flagged_share", "z": float(z),
            "p_value": float(norm.sf(z)), "per_class": per_class}


def min_failing_share(n_syn: int, limit: float, v_limit: float, alpha: float) -> float:
    """The gate's resolution: the smallest flagged share of a cohort of ``n_syn`` samples that fails against
    ``limit`` (variance ``v_limit``, 0 for the policy limit) at level ``alpha``; NaN when none does.

    A small reference gives a wide ``v_limit``: e.g. 3 of 80 reference images flagged (limit 4.75%) fails a
    400-sample cohort only from 9.5% flagged, where 2,000 reference images at the same rate fail it from ~7%.
    """
    if n_syn <= 0:
        return float("nan")
    k = np.arange(int(n_syn) + 1, dtype=np.float64)
    v = _adjusted(k, n_syn)[1]
    share = k / n_syn
    fails = (share > limit) & (norm.sf((share - limit) / np.sqrt(v + v_limit)) < alpha)
    return float(share[np.argmax(fails)]) if fails.any() else float("nan")
