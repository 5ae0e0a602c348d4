"""Feature-level realism of a synthetic cohort, always next to its real-vs-real floor.

The synthetic features are compared with the real *test* split. The floor is the same comparison
for a sample of the real *training* split of the same size as the synthetic sample: a cohort cannot
be expected to beat it, and a copy of the training set sits on it exactly (the privacy stage, not
this one, rejects copies).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .frechet import frechet_distance, kernel_distance
from .prdc import prdc, prdc_per_class


def _subsample(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)


def fidelity_report(f_syn: np.ndarray, y_syn: np.ndarray, f_train: np.ndarray, y_train: np.ndarray,
                    f_test: np.ndarray, y_test: np.ndarray, class_names: list[str], max_samples: int,
                    k: int, kid_subsets: int, kid_subset_size: int, seed: int) -> dict[str, Any]:
    """FD, KID and PRDC (overall and per class) of synthetic vs test, and the same for train vs test.

    Args:
        f_syn, f_train, f_test: ``(N, D)`` features; ``y_*`` their ``(N,)`` labels.
        max_samples: cap on the synthetic/train sample (both use ``m = min(max_samples, N_syn, N_train)``)
            and on the test reference.
        k: PRDC neighbourhood size.

    Returns:
        ``fd, fd_floor, fd_ratio, kid, kid_floor, precision, ..., floor: {...}, per_class: {...},
        per_class_floor: {...}, samples: {...}``.
    """
    rng = np.random.default_rng(seed)
    m = min(max_samples, len(f_syn), len(f_train))
    si, ti = _subsample(len(f_syn), m, rng), _subsample(len(f_train), m, rng)
    ri = _subsample(len(f_test), min(max_samples, len(f_test)), rng)
    syn, tr, te = f_syn[si], f_train[ti], f_test[ri]
    fd, fd_floor = frechet_distance(syn, te), frechet_distance(tr, te)
    kid, kid_std = kernel_distance(syn, te, kid_subsets, kid_subset_size, seed)
    kid_floor, kid_floor_std = kernel_distance(tr, te, kid_subsets, kid_subset_size, seed)
    out: dict[str, Any] = {
        "fd": fd, "fd_floor": fd_floor, "fd_ratio": fd / fd_floor if fd_floor > 0 else None,
        "kid": kid, "kid_std": kid_std, "kid_floor": kid_floor, "kid_floor_std": kid_floor_std,
        **prdc(te, syn, k),
        "floor": prdc(te, tr, k),
        "per_class": prdc_per_class(te, y_test[ri], syn, y_syn[si], class_names, k),
        "per_class_floor": prdc_per_class(te, y_test[ri], tr, y_train[ti], class_names, k),
        "samples": {"synthetic": int(m), "train": int(m), "test": int(len(ri))},
    }
    return out


__all__ = ["fidelity_report"]
