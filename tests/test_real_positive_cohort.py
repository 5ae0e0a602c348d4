"""benchmarks/real_positive_cohort.py: the real images a data.rare cut removed, as a cohort evaluate reads."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import REPO, make_medmnist_npz
from synthgen.config import compose
from synthgen.curation.plan_validation import image_hashes
from synthgen.data.prepared import load_meta, load_split
from synthgen.metrics.synthetic import load_cohort
from synthgen.stages.prepare import prepare

sys.path.insert(0, str(REPO))
from benchmarks.real_positive_cohort import write_positive_cohort  # noqa: E402


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rp")
    src = make_medmnist_npz(tmp / "toy.npz", n=160, channels=1)
    ov = ["data=medmnist", f"data.path={src}", "data.classes=[a,b,c]", f"paths.prepared={tmp / 'prepared'}",
          "data.rare.classes=[b]", "data.rare.keep=5"]
    prepare(compose(ov), tmp / "prepared")
    return tmp / "prepared"


def test_cohort_is_the_removed_real_images_of_the_class_only(cut, tmp_path):
    n = write_positive_cohort(cut, "b", tmp_path / "pos")
    x, y, info = load_cohort(tmp_path / "pos", load_meta(cut))        # evaluate's reader accepts it
    with np.load(tmp_path / "pos" / "cohort.npz") as z:
        raw = z["images"]
    uncut, train = load_split(cut, "train_uncut", as_float=False), load_split(cut, "train", as_float=False)
    assert n == len(y) == (uncut.labels == 1).sum() - (train.labels == 1).sum() > 0
    assert (y == 1).all() and info["class_names"] == ["a", "b", "c"]
    mine = set(image_hashes(raw))
    assert mine <= set(image_hashes(uncut.images[uncut.labels == 1]))  # real images of class b ...
    for split in ("train", "val", "test"):                               # ... never a kept, val or test image
        assert mine.isdisjoint(image_hashes(load_split(cut, split, as_float=False).images)), split
    assert not (tmp_path / "pos" / "cohort.tmp.npz").exists()


def test_max_keeps_a_seeded_sample(cut, tmp_path):
    full = write_positive_cohort(cut, "b", tmp_path / "all")
    k = max(1, full // 2)
    assert write_positive_cohort(cut, "b", tmp_path / "s0", max_images=k, seed=0) == k
    write_positive_cohort(cut, "b", tmp_path / "s0b", max_images=k, seed=0)
    a, b = (np.load(tmp_path / d / "cohort.npz")["images"] for d in ("s0", "s0b"))
    assert np.array_equal(a, b)
    assert json.loads((tmp_path / "s0" / "cohort.json").read_text())["max_images"] == k


def test_unknown_class_or_no_cut_stops_with_one_line(cut, tmp_path):
    with pytest.raises(SystemExit, match="not a class"):
        write_positive_cohort(cut, "zebra", tmp_path / "x")
    with pytest.raises(SystemExit, match="removed no a image"):
        write_positive_cohort(cut, "a", tmp_path / "x")
