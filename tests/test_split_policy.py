"""Honest splits (issue 13): official splits stay whole (holdout carved from val), patient ids recorded,
the privacy reference split chosen by them, near-duplicates across splits measured and shown on the card."""

from __future__ import annotations

import json

import numpy as np

from conftest import expect_prepare_error, make_medmnist_npz
from synthgen.config import compose
from synthgen.stages.prepare import prepare
from synthgen.data.prepared import load_split
from synthgen.export.card import splits_section


def _medmnist_with_planted_copies(path, n_planted=5):
    src = make_medmnist_npz(path, n=160, seed=3)  # train 160, val 40, test 80
    z = dict(np.load(src))
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 2, size=z["test_images"][:n_planted].shape).astype(np.uint8)
    z["test_images"][:n_planted] = z["train_images"][10:10 + n_planted] + noise  # near-copies of train images
    z["test_labels"][:n_planted] = z["train_labels"][10:10 + n_planted]
    np.savez(src, **z)
    return src, z


def test_official_splits_test_whole_holdout_from_val(tmp_path, one_thread):
    src, z = _medmnist_with_planted_copies(tmp_path / "toy.npz")
    out = prepare(compose(["data=medmnist", f"data.path={src}", "data.classes=[a,b,c]"]), tmp_path / "p")
    meta = json.loads((out / "meta.json").read_text())

    test = load_split(out, "test", as_float=False)
    assert np.array_equal(test.images[:, 0], z["test_images"]) and np.array_equal(test.labels, z["test_labels"][:, 0])
    val, hold = load_split(out, "val", as_float=False), load_split(out, "holdout", as_float=False)
    assert all("#val-" in s for s in hold.sources) and all("#val-" in s for s in val.sources)
    assert sorted(list(val.sources) + list(hold.sources)) == [f"toy.npz#val-{i:06d}" for i in range(40)]
    assert 15 <= len(hold) <= 25
    assert len(load_split(out, "train")) == 160

    assert meta["patient_ids"] is False and meta["patients"] is None and meta["privacy_reference_split"] == "test"
    assert "patient-level" not in json.dumps(meta) and "test is kept whole" in meta["split_policy"]
    pairs = meta["near_duplicates"]["pairs"]
    assert pairs["train-test"]["near_copies"] == 5 and pairs["train-test"]["share"] == round(5 / 80, 4)
    assert pairs["val-test"]["near_copies"] == 0 and pairs["test-holdout"]["near_copies"] == 0

    card = "\n".join(splits_section(meta))
    assert "### Splits" in card and "Patient ids in the source: no" in card and "patient-level" not in card
    assert "| train-test | 80 | 5 | 6.25% |" in card


def test_patient_id_source_gives_val_reference_and_disjoint_patients(tmp_path, one_thread):
    ov = [f"data.root={tmp_path / 'demo'}", "data.patients=24", "data.images_per_patient=2"]
    out = prepare(compose(ov), tmp_path / "p")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["patient_ids"] is True and meta["privacy_reference_split"] == "val"
    assert "patient-level" in meta["split_policy"] and sum(meta["patients"].values()) == 24
    seen: dict[str, str] = {}
    for s in ("train", "val", "test", "holdout"):
        for p in load_split(out, s).patient_ids:
            assert seen.setdefault(p, s) == s, f"patient {p} in {seen[p]} and {s}"
    assert set(meta["near_duplicates"]["pairs"]) >= {"train-val", "val-holdout"}
    card = "\n".join(splits_section(meta))
    assert "Patient ids in the source: yes" in card and "patient-level" in card


def test_near_duplicate_check_can_be_skipped_and_bad_shares_refused(tmp_path):
    src = make_medmnist_npz(tmp_path / "toy.npz")
    out = prepare(compose(["data=medmnist", f"data.path={src}", "data.split.near_copy_pearson=null"]), tmp_path / "p")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["near_duplicates"] is None
    assert "Near-duplicates" not in "\n".join(splits_section(meta))
    expect_prepare_error(tmp_path, ["data=medmnist", f"data.path={src}", "data.split.holdout_from_val=1"],
                         "data.split.holdout_from_val", "expected a number in (0, 1)")
