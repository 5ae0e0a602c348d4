import numpy as np
import pytest

from synthgen.data.splits import (carve_holdout, privacy_reference_split, rare_cut, split_policy,
                                  stratified_patient_split)


def _cohort(seed=0, n_patients=200):
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 6, size=n_patients)
    pids = np.repeat([f"p{i:04d}" for i in range(n_patients)], per)
    plabel = rng.choice(4, size=n_patients, p=[0.5, 0.3, 0.17, 0.03])
    labels = np.repeat(plabel, per)
    return labels, pids


def test_no_patient_in_two_splits():
    labels, pids = _cohort()
    s = stratified_patient_split(labels, pids, {"val": .1, "test": .15, "holdout": .15}, seed=1)
    for p in np.unique(pids):
        assert len(set(s[pids == p])) == 1
    assert set(s) == {"train", "val", "test", "holdout"}


def test_split_is_seeded_and_stratified():
    labels, pids = _cohort()
    fr = {"val": .1, "test": .15, "holdout": .15}
    a = stratified_patient_split(labels, pids, fr, seed=3)
    b = stratified_patient_split(labels, pids, fr, seed=3)
    c = stratified_patient_split(labels, pids, fr, seed=4)
    assert (a == b).all() and not (a == c).all()
    for cls in range(3):  # every non-tiny class lands in every split near its share
        share = (a[labels == cls] == "train").mean()
        assert 0.45 < share < 0.75
    assert (labels[a == "holdout"] == 3).any() or (labels[a == "test"] == 3).any()


def test_carve_holdout_only_from_val():
    labels, pids = _cohort()
    i = np.arange(len(labels))
    preset = np.where(i % 4 == 0, "val", np.where(i % 4 == 1, "test", "train"))
    out = carve_holdout(preset, labels, pids, 0.5, seed=0)
    assert ((out == "holdout") <= (preset == "val")).all()
    assert (out[preset != "val"] == preset[preset != "val"]).all()  # train and test untouched
    assert 0.3 < (out == "holdout").sum() / (preset == "val").sum() < 0.7
    for p in np.unique(pids[preset == "val"]):  # by patient
        assert len(set(out[(pids == p) & (preset == "val")])) == 1
    assert (carve_holdout(preset, labels, pids, 0.5, seed=0) == out).all()
    with pytest.raises(ValueError):
        carve_holdout(preset, labels, pids, 0.0, seed=0)


def test_reference_split_and_policy_wording():
    cfg = {"val": .1, "test": .15, "holdout": .15, "holdout_from_val": .5}
    assert privacy_reference_split(True) == "val" and privacy_reference_split(False) == "test"
    for ids in (True, False):
        for official in (True, False):
            text = split_policy(ids, official, cfg)
            assert ("patient-level" in text) == (ids and not official), text
            assert ("test is kept whole" in text) == official
    assert "reference" in split_policy(False, True, cfg) and "50% of the official val" in split_policy(False, True, cfg)


def test_rare_cut_keeps_exactly_n_of_rare_class():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 5)
    m = rare_cut(labels, [1], keep=7, seed=0)
    assert (labels[m] == 1).sum() == 7 and (labels[m] == 0).sum() == 50 and (labels[m] == 2).sum() == 5
    assert (rare_cut(labels, [1], keep=7, seed=0) == m).all()
    assert rare_cut(labels, [1], keep=None, seed=0).all()


def test_bad_fractions():
    labels, pids = _cohort()
    with pytest.raises(ValueError):
        stratified_patient_split(labels, pids, {"val": .6, "test": .5}, seed=0)
