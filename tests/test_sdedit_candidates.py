"""benchmarks/sdedit_candidates.py: edits of a class's real training images with a run's diffusion model."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, make_medmnist_npz
from synthgen.config import compose
from synthgen.data.prepared import load_split
from synthgen.data.transforms import dequantize
from synthgen.metrics.synthetic import load_cohort
from synthgen.models.checkpoints import save_generator
from synthgen.models.diffusion import DiffusionModule
from synthgen.stages.prepare import prepare

sys.path.insert(0, str(REPO))
from benchmarks.sdedit_candidates import write_sdedit_cohort  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder: prepared toy data and an untrained tiny diffusion model saved like the train stage does."""
    tmp = tmp_path_factory.mktemp("sd")
    src = make_medmnist_npz(tmp / "toy.npz", n=80, channels=1)
    prepare(compose(["data=medmnist", f"data.path={src}", "data.classes=[a,b,c]"]), tmp / "data" / "prepared")
    torch.manual_seed(0)
    model = DiffusionModule(["a", "b", "c"], (1, 28, 28), channels=[8, 16], blocks_per_level=1, autocast=False)
    save_generator(tmp / "models" / "generator.ckpt", model, "test")
    return tmp


def _sources(run, cls: int, out) -> np.ndarray:
    """The recorded source of each edit after its recorded rotation and flip, in [0, 1]."""
    tr = load_split(run / "data" / "prepared", "train", as_float=False)
    real = dequantize(tr.images[tr.labels == cls])
    with np.load(out / "cohort.npz") as z:
        src, rot, flip = z["source"], z["rot"], z["flip"]
    x = np.stack([np.rot90(real[s], int(r), axes=(-2, -1)) for s, r in zip(src, rot)])
    return np.where(flip[:, None, None, None].astype(bool), x[..., ::-1], x)


def test_weak_edits_stay_near_their_recorded_source_strong_ones_do_not(run, tmp_path):
    sym = ("hflip", "vflip", "rot90")
    weak = write_sdedit_cohort(run, "b", 24, 0.02, tmp_path / "weak", symmetries=sym)
    write_sdedit_cohort(run, "b", 24, 1.0, tmp_path / "strong", symmetries=sym)
    with np.load(tmp_path / "weak" / "cohort.npz") as z:
        assert z["rot"].any() and z["flip"].any()               # the declared transforms are drawn
    assert weak["n_real"] > 0
    d = {}
    for name in ("weak", "strong"):
        x, y, info = load_cohort(tmp_path / name, json.loads((run / "data/prepared/meta.json").read_text()))
        assert x.shape == (24, 1, 28, 28) and (y == 1).all() and info["class_names"] == ["a", "b", "c"]
        d[name] = np.abs(x - _sources(run, 1, tmp_path / name)).mean()
    assert d["weak"] < 0.03 < d["strong"]                        # an untrained net: strength 1 is noise


def test_without_declared_symmetries_nothing_is_rotated_or_mirrored(run, tmp_path):
    """A lateralized class (a chest X-ray's left and right) must not be mirrored: no --symmetries, no transform."""
    write_sdedit_cohort(run, "b", 24, 0.02, tmp_path / "plain")
    with np.load(tmp_path / "plain" / "cohort.npz") as z:
        assert not z["rot"].any() and not z["flip"].any()
    x, _, _ = load_cohort(tmp_path / "plain", json.loads((run / "data/prepared/meta.json").read_text()))
    tr = load_split(run / "data" / "prepared", "train", as_float=False)
    src = dequantize(tr.images[tr.labels == 1])[np.load(tmp_path / "plain" / "cohort.npz")["source"]]
    assert np.abs(x - src).mean() < 0.03


def test_same_settings_same_bytes_other_seed_other_edits(run, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_sdedit_cohort(run, "a", 16, 0.3, tmp_path / name, seed=seed)
    a, b, c = (np.load(tmp_path / n / "cohort.npz") for n in "abc")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    assert not np.array_equal(a["images"], c["images"]) and not np.array_equal(a["seeds"], c["seeds"])
    assert not (tmp_path / "a" / "cohort.tmp.npz").exists()


def test_bad_class_or_strength_stops_with_one_line(run, tmp_path):
    with pytest.raises(SystemExit, match="not a class"):
        write_sdedit_cohort(run, "zebra", 4, 0.5, tmp_path / "x")
    with pytest.raises(SystemExit, match="strength"):
        write_sdedit_cohort(run, "a", 4, 0.0, tmp_path / "x")
