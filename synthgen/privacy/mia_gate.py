"""Small-sample tests for the membership-inference gates (AUC and TPR at 1% FPR).

Both gates compare an attack statistic with a literature limit (AUC 0.60, TPR 3% at 1% FPR). A limit alone has
no sampling error: with 12 non-members a model that memorized nothing passes AUC 0.6 a good share of the time
and its "1% FPR" threshold is really the largest non-member score (true FPR ~ 1/13). The gates therefore fail
only when the excess over the limit is significant under a null that is valid at the audit's sizes.

AUC (:func:`auc_test`): ``H0: AUC <= limit``. The AUC's standard error at the null boundary ``A = limit`` by
Hanley & McNeil (1982), with ``m`` members and ``n`` non-members::

    Q1 = A / (2 - A),  Q2 = 2 A^2 / (1 + A)
    se^2 = [A (1 - A) + (m - 1)(Q1 - A^2) + (n - 1)(Q2 - A^2)] / (m n)
    p = 1 - Phi((auc - limit) / se),  min_failing_auc = limit + z_(1-alpha) se

TPR at 1% FPR (:func:`tpr_rank_test`): the threshold is the ``j``-th largest of the ``n`` non-member scores,
``j = max(1, floor(fpr (n + 1)))``; ``X`` counts members strictly above it. Under exchangeability (members and
non-members from one distribution) the true FPR ``F`` of that threshold (the non-member mass above it) is
``Beta(j, n + 1 - j)`` (mean ``j / (n + 1)``: ``1/13`` at ``n = 12``, ~1% at ``n >= 100``), and given ``F``
every member is above it independently with probability ``F``; mixed over ``F`` this is the beta-binomial,
i.e. the negative hypergeometric law of the members ranked above the ``j``-th non-member in the combined
ranking (exact, whatever the score distribution). The allowed leak: ``H0`` is the leak that gives
``TPR = limit`` at ``FPR = fpr`` exactly when a share ``e0 = (limit - fpr) / (1 - fpr)`` of the members is
exposed (ranked above every non-member, e.g. memorized copies) and the rest are exchangeable with the
non-members, so a threshold of true FPR ``F`` catches ``e0 + (1 - e0) F`` of them; below ``fpr`` no threshold
may catch more than ``limit`` (TPR is monotone in the FPR). Hence the null rate
``r(F) = max(limit, e0 + (1 - e0) F)`` (``max(limit, F)`` up to the exposed share) and::

    p = P(X >= x),  X | F ~ Binomial(m, r(F)),  F ~ Beta(j, n + 1 - j)

computed by quadrature over the Beta quantiles. With ``limit = 0`` this is exactly the negative hypergeometric
tail (members exchangeable with non-members); with very many non-members ``F`` concentrates at ``fpr`` and
it tends to the one-sided binomial test of ``H0: TPR <= limit``. A 1% FPR is only resolvable when ``n >= 1 / fpr`` (100 non-members); below that the
gate reports ``fpr_resolvable: false`` and the achieved FPR (``fpr_threshold = j / (n + 1)``, expected).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import roots_legendre
from scipy.stats import beta, binom, norm

_NODES, _WEIGHTS = roots_legendre(256)


def hanley_mcneil_se(auc: float, n_members: int, n_nonmembers: int) -> float:
    """Hanley-McNeil standard error of an AUC ``auc`` in ``[0, 1]`` from ``n_members`` and ``n_nonmembers``."""
    a, m, n = float(auc), int(n_members), int(n_nonmembers)
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    var = (a * (1 - a) + (m - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (m * n)
    return float(math.sqrt(max(var, 0.0)))


def auc_test(auc: float, n_members: int, n_nonmembers: int, limit: float, alpha: float) -> dict:
    """One-sided test of ``H0: AUC <= limit`` (Hanley-McNeil standard error at ``limit``).

    Returns ``p_value`` (``nan`` when the sizes are unknown or zero), ``se`` and ``min_failing_auc`` (the
    smallest AUC that fails at these sizes and ``alpha``; 1.0 caps it).
    """
    if not (n_members and n_nonmembers and n_members > 0 and n_nonmembers > 0):
        return {"p_value": float("nan"), "se": float("nan"), "min_failing_auc": float(limit)}
    se = hanley_mcneil_se(limit, n_members, n_nonmembers)
    p = float(norm.sf((auc - limit) / se)) if np.isfinite(auc) and se > 0 else float("nan")
    return {"p_value": p, "se": se, "min_failing_auc": float(min(1.0, limit + norm.isf(alpha) * se))}


def threshold_rank(n_nonmembers: int, fpr: float = 0.01) -> int:
    """``j``: the threshold is the ``j``-th largest non-member score, ``max(1, floor(fpr (n + 1)))``."""
    return max(1, int(math.floor(fpr * (int(n_nonmembers) + 1) + 1e-9)))


def rank_tpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float = 0.01) -> dict:
    """Members above the rank threshold (``(N,)`` scores, larger = more likely a member).

    Returns ``threshold_rank`` ``j``, ``n_above`` (members strictly above the ``j``-th largest non-member),
    ``tpr_at_threshold`` (``n_above / m``), ``fpr_threshold`` (``j / (n + 1)``, the expected true FPR of the
    threshold) and ``fpr_empirical`` (``(j - 1) / n``, non-members strictly above it).
    """
    m, n = np.asarray(member_scores, np.float64), np.sort(np.asarray(nonmember_scores, np.float64))[::-1]
    j = threshold_rank(len(n), fpr)
    if len(m) == 0 or len(n) < j:
        return {"threshold_rank": j, "n_above": 0, "tpr_at_threshold": float("nan"),
                "fpr_threshold": float("nan"), "fpr_empirical": float("nan")}
    x = int((m > n[j - 1]).sum())
    return {"threshold_rank": j, "n_above": x, "tpr_at_threshold": x / len(m),
            "fpr_threshold": j / (len(n) + 1), "fpr_empirical": (j - 1) / len(n)}


def null_rate(f: np.ndarray, limit: float, fpr: float = 0.01) -> np.ndarray:
    """``r(F) = max(limit, e0 + (1 - e0) F)``, ``e0 = max(0, (limit - fpr) / (1 - fpr))``: the most members a
    threshold of true FPR ``F`` may catch under ``H0`` (module docstring)."""
    e0 = max(0.0, (float(limit) - float(fpr)) / (1.0 - float(fpr)))
    return np.maximum(float(limit), e0 + (1.0 - e0) * np.asarray(f, np.float64))


def tpr_rank_p_value(n_above: int, n_members: int, n_nonmembers: int, j: int, limit: float,
                     fpr: float = 0.01) -> float:
    """``P(X >= n_above)`` with ``X | F ~ Binomial(m, r(F))`` (:func:`null_rate`), ``F ~ Beta(j, n + 1 - j)``.

    See the module docstring. ``limit = 0`` gives the exact negative hypergeometric (rank) tail.
    """
    x, m, n, j = int(n_above), int(n_members), int(n_nonmembers), int(j)
    if m <= 0 or n < j or j < 1:
        return float("nan")
    if x <= 0:
        return 1.0
    b = beta(j, n + 1 - j)
    u0 = float(b.cdf(fpr)) if limit > 0 else 0.0
    low = u0 * float(binom.sf(x - 1, m, limit)) if u0 > 0 else 0.0   # F <= fpr: the rate is the limit
    u = u0 + (1.0 - u0) * (_NODES + 1.0) / 2.0                          # Gauss-Legendre over F's quantiles
    f = np.clip(b.ppf(u), 0.0, 1.0)
    high = (1.0 - u0) / 2.0 * float(np.sum(_WEIGHTS * binom.sf(x - 1, m, null_rate(f, limit, fpr))))
    return float(min(1.0, max(0.0, low + high)))


def tpr_test(m: dict, limit: float, fpr: float = 0.01) -> dict:
    """The TPR gate's test on attack metrics ``m`` (:func:`~synthgen.privacy.membership.attack_metrics`).

    Uses the rank threshold (``n_above``, ``threshold_rank``, ``n_nonmembers``) when recorded. Without them
    (summaries from before this rule) the threshold is taken as exact: ``round(tpr * m)`` members against a
    one-sided binomial at ``limit``, and ``fpr_resolvable`` is ``None``.
    """
    n_mem, n_non = int(m.get("n_members", 0) or 0), m.get("n_nonmembers")
    tpr = m.get("tpr_at_fpr", float("nan"))
    if "n_above" in m and n_non:
        j, x = int(m["threshold_rank"]), int(m["n_above"])
        p = tpr_rank_p_value(x, n_mem, int(n_non), j, limit, fpr)
        return {"p_value": p, "n_above": x, "threshold_rank": j, "tpr_at_threshold": m.get("tpr_at_threshold"),
                "fpr_threshold": m.get("fpr_threshold"), "fpr_empirical": m.get("fpr_empirical"),
                "n_nonmembers": int(n_non), "fpr_resolvable": bool(int(n_non) * fpr >= 1.0 - 1e-9),
                "null": f"rank: X ~ Binomial(m, max({limit}, e0 + (1 - e0) F)), e0 = ({limit} - {fpr}) / (1 - {fpr}), "
                        f"F ~ Beta({j}, {int(n_non) + 1 - j})"}
    if not (n_mem > 0 and np.isfinite(tpr)):
        return {"p_value": float("nan"), "fpr_resolvable": None, "null": "none (no sizes recorded)"}
    k = int(round(tpr * n_mem))
    p = float(binom.sf(k - 1, n_mem, limit)) if k > 0 else 1.0
    return {"p_value": p, "n_above": k, "fpr_resolvable": None,
            "null": f"binomial at {limit} (threshold taken as exact: no non-member count recorded)"}
