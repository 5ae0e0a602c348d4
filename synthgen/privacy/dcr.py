"""Distance to closest record (DCR): are synthetic samples closer to the training set than real unseen images are?

For each query compare its nearest-neighbour distance to the training set with that to a holdout set of
*equal size* (seeded random subsets ``T_sub`` of train and ``H_sub`` of the holdout ``H``, both
``min(N_train, N_holdout)`` images, so neither side wins by having more records); the *share* is the fraction
of queries closer to ``T_sub`` (ties count half).

The share of a generator that learned the distribution is *not* 0.5 in general: when ``H`` is shifted from
the training distribution (other scanners, sites or scan protocols in a test split) or the representation is
fitted on the training split, real images the model never saw score above 0.5 too (0.60 measured on a CT
cohort). So the share is computed in exactly the same way for a *reference* set ``R`` of real unseen images
drawn from the training distribution (sharing no patient with ``H``), and the gate tests

    H0: share_syn <= share_ref + margin      against      H1: share_syn > share_ref + margin

with a one-sided two-sample test of two proportions (:func:`dcr_difference_test`). ``share_ref`` is
class-matched: the per-class reference shares weighted by the synthetic cohort's class mix (a balanced
synthetic cohort of an imbalanced dataset is compared with a reference of the same mix).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest, norm


def dcr_share(d_train: np.ndarray, d_holdout: np.ndarray) -> dict[str, float]:
    """Share of queries closer to train than to holdout.

    Args:
        d_train: ``(N,)`` distance of each query to its nearest (subsampled) training image.
        d_holdout: ``(N,)`` distance to its nearest holdout image (same number of reference images).

    Returns:
        ``share`` in ``[0, 1]``, ``n``, ``closer_train``, ``ties``, ``closer`` ``(N,)`` float per query
        (1 closer to train, 0.5 tie, 0 closer to holdout; for class-wise shares) and ``p_value_vs_half``:
        the one-sided exact binomial p-value of ``share > 0.5`` (the constant null this gate used before it
        had a reference; reported for comparison, never gated).
    """
    d_train, d_holdout = np.asarray(d_train, np.float64), np.asarray(d_holdout, np.float64)
    n = len(d_train)
    if n == 0:
        return {"share": float("nan"), "n": 0, "closer_train": 0, "ties": 0, "closer": np.zeros(0),
                "p_value_vs_half": 1.0}
    closer = np.where(d_train < d_holdout, 1.0, np.where(d_train == d_holdout, 0.5, 0.0))
    k = int(round(closer.sum()))
    p = float(binomtest(k, n, 0.5, alternative="greater").pvalue)
    return {"share": float(closer.mean()), "n": n, "closer_train": int((closer == 1).sum()),
            "ties": int((closer == 0.5).sum()), "closer": closer, "p_value_vs_half": p}


def _adjusted(x: float, n: int) -> tuple[float, float]:
    """Agresti-Caffo adjusted proportion ``(x + 1) / (n + 2)`` and its variance ``p(1 - p) / (n + 2)``:
    never zero, so an all-or-nothing sample (share 0 or 1) still carries its uncertainty."""
    p = (x + 1.0) / (n + 2.0)
    return p, p * (1.0 - p) / (n + 2.0)


def dcr_difference_test(closer_syn: np.ndarray, labels_syn: np.ndarray, closer_ref: np.ndarray,
                        labels_ref: np.ndarray, margin: float) -> dict[str, Any]:
    """One-sided two-sample test of ``share_syn > share_ref + margin`` (class-matched reference share).

    With ``pi_c`` the synthetic class shares and ``p_ref,c`` the reference share of class ``c``:

        share_ref_matched = sum_c pi_c p_ref,c
        D = share_syn - share_ref_matched
        Var(D) = p_syn (1 - p_syn) / n_syn + sum_c pi_c^2 p_ref,c (1 - p_ref,c) / n_ref,c
        z = (D - margin) / sqrt(Var(D)),   p = 1 - Phi(z)

    Variances use Agresti-Caffo adjusted proportions (never zero). Both samples' variances count. The
    synthetic variance is the pooled binomial one (>= the stratified one: conservative). A synthetic class
    absent from the reference gets the pooled reference share and variance (listed in
    ``classes_without_reference``). The queries share ``T_sub`` and ``H``, so their indicators are not
    independent; like any binomial DCR test this treats them as if they were.

    Args:
        closer_syn, closer_ref: ``(N,)`` per-query indicator (1, 0.5 tie, 0) from :func:`dcr_share`.
        labels_syn, labels_ref: ``(N,)`` int classes.
        margin: tolerated excess of the synthetic share over the reference share.

    Returns:
        ``share_syn``, ``share_ref`` (pooled), ``share_ref_matched``, ``difference`` (D), ``margin``,
        ``z``, ``p_value``, ``n_syn``, ``n_ref``, ``per_class`` ``{c: {pi, share_syn, share_ref, n_ref}}``,
        ``classes_without_reference``.
    """
    cs, cr = np.asarray(closer_syn, np.float64), np.asarray(closer_ref, np.float64)
    ys, yr = np.asarray(labels_syn).reshape(-1), np.asarray(labels_ref).reshape(-1)
    ns, nr = len(cs), len(cr)
    out: dict[str, Any] = {"margin": float(margin), "n_syn": ns, "n_ref": nr}
    if ns == 0 or nr == 0:
        return {**out, "share_syn": float("nan"), "share_ref": float("nan"), "share_ref_matched": float("nan"),
                "difference": float("nan"), "z": float("nan"), "p_value": 1.0, "per_class": {},
                "classes_without_reference": []}
    share_syn, share_ref = float(cs.mean()), float(cr.mean())
    _, var = _adjusted(cs.sum(), ns)
    pooled_adj = _adjusted(cr.sum(), nr)
    matched, per_class, missing = 0.0, {}, []
    for c in np.unique(ys):
        pi = float((ys == c).mean())
        rc = cr[yr == c]
        if len(rc):
            p_c, v_c = float(rc.mean()), _adjusted(rc.sum(), len(rc))[1]
        else:
            p_c, v_c = share_ref, pooled_adj[1]
            missing.append(int(c))
        matched += pi * p_c
        var += pi * pi * v_c
        per_class[int(c)] = {"pi": pi, "share_syn": float(cs[ys == c].mean()), "share_ref": p_c,
                             "n_ref": int(len(rc))}
    diff = share_syn - matched
    z = (diff - margin) / np.sqrt(var)
    return {**out, "share_syn": share_syn, "share_ref": share_ref, "share_ref_matched": float(matched),
            "difference": float(diff), "z": float(z), "p_value": float(norm.sf(z)), "per_class": per_class,
            "classes_without_reference": missing}


def equal_size_subset(n_train: int, n_holdout: int, seed: int) -> np.ndarray:
    """Sorted seeded indices of ``min(n_train, n_holdout)`` training images (the DCR training reference)."""
    rng = np.random.default_rng(seed)
    m = min(n_train, n_holdout)
    return np.sort(rng.permutation(n_train)[:m])


def equal_size_subsets(n_train: int, n_holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(T_sub, H_sub)``: sorted seeded rows of train and holdout, ``min(n_train, n_holdout)`` each (the side
    that is larger is subsampled, so neither wins by having more records; the training side is
    :func:`equal_size_subset`)."""
    t_sub = equal_size_subset(n_train, n_holdout, seed)
    if n_holdout <= n_train:
        return t_sub, np.arange(n_holdout)
    h_sub = np.sort(np.random.default_rng(seed + 2).permutation(n_holdout)[:n_train])
    return t_sub, h_sub


def class_matched_pairs(labels_train: np.ndarray, labels_ref: np.ndarray, cap: int, seed: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Members and non-members for membership inference with the same class mix on both sides.

    Per class ``c``: ``k_c = min(#train_c, #ref_c)`` seeded rows of each side, scaled down proportionally
    (largest remainder, ``cap`` in all) when ``sum_c k_c > cap``. Equal class counts make members and reference
    non-members exchangeable when the generator memorized nothing (same class-conditional distribution), so
    the attack's null AUC is 0.5; unequal mixes would let the attack score the class instead of membership.

    Returns:
        ``(members, nonmembers)``: sorted int64 row indices into train and the reference, equal lengths.
    """
    yt, yr = np.asarray(labels_train).reshape(-1), np.asarray(labels_ref).reshape(-1)
    classes = np.intersect1d(np.unique(yt), np.unique(yr))
    k = {int(c): min(int((yt == c).sum()), int((yr == c).sum())) for c in classes}
    total = sum(k.values())
    if total > cap > 0:  # largest remainder: exactly ``cap`` in all, each class in proportion
        raw = {c: v * cap / total for c, v in k.items()}
        k = {c: int(np.floor(r)) for c, r in raw.items()}
        for c in sorted(raw, key=lambda c: (-(raw[c] - k[c]), c))[: cap - sum(k.values())]:
            k[c] += 1
    rng = np.random.default_rng(seed)
    mem, non = [], []
    for c in sorted(k):
        rt, rr = np.flatnonzero(yt == c), np.flatnonzero(yr == c)
        mem.append(rng.permutation(rt)[:k[c]])
        non.append(rng.permutation(rr)[:k[c]])
    if not mem:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.sort(np.concatenate(mem)).astype(np.int64), np.sort(np.concatenate(non)).astype(np.int64)
