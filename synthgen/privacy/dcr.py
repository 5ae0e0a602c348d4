"""Distance to closest record (DCR): are synthetic samples closer to the training set than to unseen data?

For each synthetic sample compare its nearest-neighbour distance to the training set with that to a holdout
set of *equal size* (the training reference is a seeded random subset the size of the holdout, so neither side
wins by having more records). A generator that learned the distribution rather than the records puts half
of its samples on each side: share = 0.5. We test ``H0: p <= 0.5`` against ``p > 0.5`` with a one-sided exact
binomial test; ties count half.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest


def dcr_share(d_train: np.ndarray, d_holdout: np.ndarray) -> dict[str, float]:
    """Share of samples closer to train than to holdout and its one-sided binomial p-value.

    Args:
        d_train: ``(N,)`` distance of each synthetic sample to its nearest (subsampled) training image.
        d_holdout: ``(N,)`` distance to its nearest holdout image (same number of reference images).

    Returns:
        ``share`` in ``[0, 1]``, ``p_value`` of ``share > 0.5`` by chance, ``n``, ``closer_train``, ``ties``.
    """
    d_train, d_holdout = np.asarray(d_train, np.float64), np.asarray(d_holdout, np.float64)
    n = len(d_train)
    if n == 0:
        return {"share": float("nan"), "p_value": 1.0, "n": 0, "closer_train": 0, "ties": 0}
    closer = int((d_train < d_holdout).sum())
    ties = int((d_train == d_holdout).sum())
    share = (closer + 0.5 * ties) / n
    k = int(round(closer + 0.5 * ties))
    p = float(binomtest(k, n, 0.5, alternative="greater").pvalue)
    return {"share": float(share), "p_value": p, "n": n, "closer_train": closer, "ties": ties}


def equal_size_subset(n_train: int, n_holdout: int, seed: int) -> np.ndarray:
    """Sorted seeded indices of ``min(n_train, n_holdout)`` training images (the DCR/MIA member reference)."""
    rng = np.random.default_rng(seed)
    m = min(n_train, n_holdout)
    return np.sort(rng.permutation(n_train)[:m])
