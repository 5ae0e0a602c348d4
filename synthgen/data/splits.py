"""Class-stratified, seeded splits (patient-level where the source has patient ids) and the rare-class cut.

Two kinds of source:

* **No official split** (DICOM, NIfTI, image folder, demo: a labels CSV with a ``patient_id`` per image):
  one patient-level, class-stratified, seeded split into train/val/test/holdout
  (:func:`stratified_patient_split`). A patient's images all land in one split, so the four splits are
  patient-disjoint; patients are stratified by their dominant class (ties go to the rarer class).
* **Official splits** (MedMNIST): train/val/test are kept as published and ``test`` stays *whole*. The
  privacy ``holdout`` is carved out of the official **val** split (:func:`carve_holdout`,
  ``data.split.holdout_from_val``, class-stratified, seeded; by patient when the source has patient ids,
  image by image otherwise); the rest of val stays val.

Why not carve the holdout out of test: MedMNIST ships no patient ids, so a carve goes image by image, and
images cut from one scan (adjacent CT slices, one patient's several X-rays) are near-duplicates. Splitting
an official split image by image puts near-copies of holdout images into the rest of that split (measured on
a CT cohort: 98% of test images lay closer to a holdout image than to an equally large random subset of
training images), so "real images of unseen patients" would be false for the evaluation split. As
published, MedMNIST's test split shares no scans with train or val; it is kept whole so that the evaluation
stays honest. (Val is not always as clean: PneumoniaMNIST's val was cut from its source's training set, and
the near-duplicate table of :mod:`synthgen.data.near_duplicates` shows it.)

The **privacy reference split** (``meta.json`` ``privacy_reference_split``, see
:func:`privacy_reference_split`): the privacy gate compares the holdout with a second set of real images the
model never saw, drawn from the training distribution; that set must share no scans with the holdout.

* patient ids present: ``"val"``; val and holdout are patient-disjoint (whichever way they were made);
* patient ids absent: ``"test"``; val and holdout come from one official split cut image by image and may
  share scans, while the official test split shares none with the holdout. (The membership attacks, which
  never look at the holdout, take the rest of val as non-members: the official test may come from other
  scanners, and shifted non-members inflate an attack.)

Without patient ids *and* without official splits (no reader produces this today) nothing guarantees
scan-disjoint splits; the policy text says so.
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
                  fraction_of_val: float, seed: int) -> np.ndarray:
    """Move a class-stratified, seeded share of the official ``val`` split into ``holdout``.

    Grouped by ``patient_ids`` (with stand-in ids, one per image, that is image by image); every other
    split, ``test`` included, is returned untouched.

    Args:
        splits: ``(N,)`` official split names (``train``/``val``/``test``).
        labels: ``(N,)`` int class per image.
        patient_ids: ``(N,)`` patient (or stand-in image id) per image.
        fraction_of_val: target share of val's images moved to holdout, in ``(0, 1)``.
        seed: the only source of randomness.

    Returns:
        ``(N,)`` split names, ``holdout`` for the carved images.
    """
    splits = np.asarray(splits, dtype="<U16").copy()
    if not 0.0 < fraction_of_val < 1.0:
        raise ValueError(f"holdout share of val {fraction_of_val} must lie in (0, 1)")
    val = np.flatnonzero(splits == "val")
    if len(val) == 0:
        return splits
    sub = stratified_patient_split(np.asarray(labels)[val], np.asarray(patient_ids)[val],
                                   {"holdout": fraction_of_val}, seed)
    splits[val[sub == "holdout"]] = "holdout"
    return splits


def privacy_reference_split(has_patient_ids: bool) -> str:
    """The split of real unseen images the privacy gate sets against the holdout (module docstring)."""
    return "val" if has_patient_ids else "test"


def split_policy(has_patient_ids: bool, official_splits: bool, split_cfg: Mapping) -> str:
    """One plain-English sentence or two for ``meta.json``, the logs and the dataset card."""
    if official_splits:
        how = "by patient" if has_patient_ids else "image by image (the source has no patient ids)"
        text = (f"The source's official train/val/test splits are kept; test is kept whole. The privacy holdout "
                f"is {float(split_cfg['holdout_from_val']):.0%} of the official val split, class-stratified and "
                f"drawn {how}; the rest stays val.")
        if not has_patient_ids:
            text += (" Val and holdout may share scans, so the privacy gate's reference of unseen images (DCR and "
                     "flagged-share nulls) is the official test split, which shares none with the holdout; the "
                     "membership attacks take the rest of val as non-members.")
        return text
    shares = ", ".join(f"{k} {float(split_cfg[k]):.0%}" for k in ("val", "test", "holdout"))
    if has_patient_ids:
        return (f"One patient-level, class-stratified split ({shares}, train the rest): no patient's images "
                "are in two splits.")
    return (f"One class-stratified split image by image ({shares}, train the rest): the source has no patient "
            "ids, so images of one scan or patient can sit in several splits.")


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
