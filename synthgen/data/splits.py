"""Patient-level, class-stratified, seeded splits and the rare-class cut.

Rules (tested):
* a patient's images all land in one split (no leakage between train/val/test/holdout);
* patients are stratified by their dominant class (ties go to the rarer class), so every split sees
  every class in roughly the cohort's proportions;
* ``holdout`` holds real images of patients never used for training; the privacy gate calibrates its
  thresholds on holdout->train statistics;
* a source that ships its own split (MedMNIST) keeps it; the holdout is carved out of its test split.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

SPLITS = ("train", "val", "test", "holdout")


def _dominant_class(labels: np.ndarray, inverse: np.ndarray, n_patients: int, class_freq: np.ndarray) -> np.ndarray:
    n_classes = len(class_freq)
    counts = np.zeros((n_patients, n_classes), dtype=np.int64)
    np.add.at(counts, (inverse, labels), 1)
    # Prefer the rarer class on ties: a tiny secondary key.
    score = counts - class_freq[None, :] / (class_freq.sum() + 1.0)
    return np.argmax(score, axis=1)


def stratified_patient_split(
    labels: np.ndarray,
    patient_ids: np.ndarray,
    fractions: Mapping[str, float],
    seed: int,
) -> np.ndarray:
    """Assign each image a split name.

    Args:
        labels: ``(N,)`` int class per image.
        patient_ids: ``(N,)`` patient per image.
        fractions: target share of *images* per split name, e.g. ``{"val": .1, "test": .15,
            "holdout": .15}``; ``train`` takes the rest.
        seed: the only source of randomness.

    Returns:
        ``(N,)`` unicode array of split names.
    """
    labels = np.asarray(labels, dtype=np.int64)
    fr = {k: float(v) for k, v in fractions.items() if k != "train"}
    if any(v < 0 for v in fr.values()) or sum(fr.values()) >= 1.0:
        raise ValueError(f"split fractions {fr} must be >= 0 and leave room for train")
    fr["train"] = 1.0 - sum(fr.values())
    names = sorted(fr)  # fixed order, independent of dict order
    uniq, inverse = np.unique(np.asarray(patient_ids, dtype=str), return_inverse=True)
    n_img = np.bincount(inverse, minlength=len(uniq))
    class_freq = np.bincount(labels, minlength=labels.max(initial=0) + 1).astype(np.float64)
    stratum = _dominant_class(labels, inverse, len(uniq), class_freq)
    rng = np.random.default_rng(seed)
    patient_split = np.empty(len(uniq), dtype=object)
    for c in np.unique(stratum):
        members = np.flatnonzero(stratum == c)
        members = members[rng.permutation(len(members))]
        total = n_img[members].sum()
        target = np.array([fr[n] * total for n in names])
        got = np.zeros(len(names))
        for p in members:
            # Greedy: give the patient to the split furthest below its target share.
            k = int(np.argmax(target - got))
            patient_split[p] = names[k]
            got[k] += n_img[p]
    return np.asarray(patient_split[inverse], dtype=str)


def carve_holdout(splits: np.ndarray, labels: np.ndarray, patient_ids: np.ndarray,
                  fraction_of_test: float, seed: int) -> np.ndarray:
    """Move a patient-level, class-stratified share of the ``test`` split into ``holdout``."""
    splits = np.asarray(splits, dtype="<U16").copy()
    test = np.flatnonzero(splits == "test")
    if len(test) == 0 or fraction_of_test <= 0:
        return splits
    sub = stratified_patient_split(labels[test], patient_ids[test], {"holdout": fraction_of_test}, seed)
    splits[test[sub == "holdout"]] = "holdout"
    return splits


def rare_cut(labels: np.ndarray, rare_classes: Sequence[int], keep: int | None, seed: int) -> np.ndarray:
    """Boolean mask over training images: keep only ``keep`` (seeded) images of each rare class.

    Classes not listed, and every image when ``keep`` is None, are kept whole.
    """
    mask = np.ones(len(labels), dtype=bool)
    if keep is None or not rare_classes:
        return mask
    rng = np.random.default_rng(seed)
    for c in sorted(rare_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) > keep:
            drop = idx[rng.permutation(len(idx))[keep:]]
            mask[drop] = False
    return mask
