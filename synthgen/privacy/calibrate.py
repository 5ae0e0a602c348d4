"""Thresholds from holdout->train statistics: the false-flag rate on unseen patients is known by construction.

For a similarity score ``s`` (higher = more copy-like) computed for every holdout image against the training
set exactly as for synthetic samples, the threshold is

    t   = max(floor, quantile_q(s_holdout))                    overall
    t_c = max(t, quantile_q(s_holdout[y == c]))                per class c with >= min_class_count images

so at most a share ``1 - q`` of genuinely new images of class ``c`` is flagged by that rule (q = 0.999 by
default; the literature value is a floor: Pearson >= 0.95). A class threshold never goes *below* the overall
one: the 99.9th percentile of a class with a few hundred holdout images is essentially its maximum, a noisy
under-estimate of the tail (measured on BloodMNIST: class-only thresholds tripled the false flags on unseen
test images), while a class whose unseen images are naturally more alike gets a higher threshold. For a
distance ratio (lower = more copy-like) everything mirrors: ``t = min(ceiling, quantile_{1-q})`` with the
literature ceiling 1/3, and ``t_c = min(t, class quantile)``.

The empirical 99.9th percentile of a few hundred holdout images is their maximum, which sits below the true
quantile: the expected share of new images above the maximum of ``n`` is ``1 / (n + 1)`` (0.4% at n = 262, not
0.1%). With ``tail="exponential"`` the quantile is extrapolated instead from the holdout's own hardest
negatives (their best matches in train after the same aligned search and refinement as any sample): a
peaks-over-threshold fit -- the top ``tail_fraction`` of the scores on a stretched scale (Fisher
``atanh`` for similarities in [-1, 1], ``-log`` for ratios) above their lower edge ``u``, excesses exponential
with the mean excess as scale -- gives ``t = u + scale * ln(k / (n (1 - q)))`` (k exceedances of n); the
threshold is the larger (ratios: smaller) of that and the empirical quantile, so it never loosens the check.

Holdout images that are exact copies of training images (MedMNIST ships some) are *not* new patients'
images: they are excluded before the quantile (and listed in the report), otherwise one native duplicate
would push the 99.9th percentile to 1.0 and switch the check off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Threshold:
    """A calibrated per-class threshold for one rule.

    Attributes:
        rule: score name (``pearson``, ``ssim``, ``embedding``, ``ratio``).
        higher_is_copy: True: flag ``score >= t``; False: flag ``score < t``.
        overall: the threshold for classes without their own.
        per_class: ``{class index: threshold}`` for classes with enough calibration images.
        quantile: the quantile used (upper tail for similarities; ``1 - quantile`` for ratios).
        bound: literature floor (similarities) or ceiling (ratios); None = none.
        n: calibration images used (after excluding native duplicates); ``n_per_class`` likewise.
        calibrated: the raw quantile before the floor, overall and per class.
    """

    rule: str
    higher_is_copy: bool
    overall: float
    per_class: dict[int, float] = field(default_factory=dict)
    quantile: float = 0.999
    bound: float | None = None
    n: int = 0
    n_per_class: dict[int, int] = field(default_factory=dict)
    calibrated: dict[str, float] = field(default_factory=dict)
    tail: str = "empirical"

    def for_labels(self, labels: np.ndarray) -> np.ndarray:
        """``(N,)`` float64 threshold for each sample's class."""
        t = np.full(len(labels), self.overall, np.float64)
        for c, v in self.per_class.items():
            t[np.asarray(labels) == c] = v
        return t

    def fires(self, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: the rule flags these samples."""
        t = self.for_labels(labels)
        s = np.asarray(scores, np.float64)
        return s >= t if self.higher_is_copy else s < t

    def describe(self, class_names: list[str] | None = None) -> dict:
        """JSON-ready description: values and how they were calibrated."""
        name = (lambda c: class_names[c] if class_names and c < len(class_names) else str(c))
        side = "upper" if self.higher_is_copy else "lower"
        q = self.quantile if self.higher_is_copy else 1.0 - self.quantile
        op = "max" if self.higher_is_copy else "min"
        return {
            "flag_if": f"{self.rule} {'>=' if self.higher_is_copy else '<'} threshold",
            "overall": float(self.overall),
            "per_class": {name(c): float(v) for c, v in sorted(self.per_class.items())},
            "method": (f"{op}({self.bound}, {side}-tail quantile {q:g} of holdout->train {self.rule}, "
                       f"{self.tail} tail); "
                       f"per class: {op}(overall, class quantile) for classes with enough holdout images; "
                       "holdout images that are exact copies of training images excluded"),
            "quantile": float(q),
            "literature_bound": self.bound,
            "n_calibration": int(self.n),
            "n_calibration_per_class": {name(c): int(v) for c, v in sorted(self.n_per_class.items())},
            "calibrated_before_bound": {k: float(v) for k, v in sorted(self.calibrated.items())},
        }


TAILS = ("empirical", "exponential")


def tail_quantile(s: np.ndarray, q: float, higher_is_copy: bool, tail: str = "empirical",
                  tail_fraction: float = 0.1) -> float:
    """Upper-tail (``higher_is_copy``) or lower-tail quantile ``q`` of ``s`` (module doc).

    Args:
        s: ``(N,)`` holdout scores: similarities in ``[-1, 1]`` or positive ratios (``higher_is_copy`` False).
        q: e.g. 0.999.
        tail: ``empirical`` (``np.quantile``) or ``exponential`` (peaks over threshold, never looser).
        tail_fraction: share of the scores in the fitted tail (at least 5 of them).
    """
    s = np.asarray(s, np.float64)
    emp = float(np.quantile(s, q if higher_is_copy else 1.0 - q))
    if tail == "empirical" or len(s) < 20:
        return emp
    if tail not in TAILS:
        raise ValueError(f"unknown tail {tail!r}; one of {TAILS}")
    z = np.arctanh(np.clip(s, -1 + 1e-6, 1 - 1e-6)) if higher_is_copy else -np.log(np.maximum(s, 1e-12))
    z = np.sort(z)[::-1]
    n = len(z)
    k = min(n - 1, max(5, int(np.ceil(tail_fraction * n))))
    u = z[k]
    grow = np.log(k / (n * (1.0 - q)))
    if grow <= 0:                                       # the quantile lies inside the sample's body
        return emp
    t = u + float(np.mean(z[:k] - u)) * grow
    if higher_is_copy:
        return max(emp, float(np.tanh(t)))
    return min(emp, float(np.exp(-t)))


def calibrate(rule: str, scores: np.ndarray, labels: np.ndarray, keep: np.ndarray, quantile: float,
              bound: float | None, min_class_count: int, higher_is_copy: bool = True,
              tail: str = "empirical", tail_fraction: float = 0.1) -> Threshold:
    """Calibrate one rule on holdout scores.

    Args:
        scores: ``(N,)`` holdout->train score per holdout image.
        labels: ``(N,)`` holdout classes.
        keep: ``(N,)`` bool, False for holdout images excluded from calibration (native exact duplicates).
        quantile: e.g. 0.999: the share of unseen images allowed below (above, for ratios) the threshold.
        bound: literature floor (``higher_is_copy``) or ceiling; None for none.
        min_class_count: classes with fewer kept holdout images use the overall threshold.
        tail, tail_fraction: how the quantile is estimated (:func:`tail_quantile`), overall and per class.
    """
    s = np.asarray(scores, np.float64)[keep]
    y = np.asarray(labels)[keep]
    if not len(s):
        raise ValueError(f"no holdout images left to calibrate {rule}")

    def clamp(v: float) -> float:
        if bound is None:
            return float(v)
        return float(max(bound, v) if higher_is_copy else min(bound, v))

    raw = tail_quantile(s, quantile, higher_is_copy, tail, tail_fraction)
    th = Threshold(rule, higher_is_copy, clamp(raw), quantile=quantile, bound=bound, n=int(len(s)),
                   calibrated={"overall": raw}, tail=tail)
    for c in np.unique(y):
        sc = s[y == c]
        th.n_per_class[int(c)] = int(len(sc))
        if len(sc) >= min_class_count:
            rc = tail_quantile(sc, quantile, higher_is_copy, tail, tail_fraction)
            th.calibrated[f"class_{int(c)}"] = rc
            th.per_class[int(c)] = max(th.overall, rc) if higher_is_copy else min(th.overall, rc)
    return th


def threshold_from_dict(d: dict) -> Threshold:
    """Inverse of ``dataclasses.asdict`` (per-class keys back to ints)."""
    d = dict(d)
    d["per_class"] = {int(k): float(v) for k, v in d.get("per_class", {}).items()}
    d["n_per_class"] = {int(k): int(v) for k, v in d.get("n_per_class", {}).items()}
    return Threshold(**d)
