import json
import subprocess
import sys

import numpy as np

from conftest import CHECK_CONTRACTS, expect_prepare_error, make_medmnist_npz, run_prepare
from synthgen.config import compose
from synthgen.data.medmnist import MedMNISTReader
from synthgen.stages.prepare import prepare
from synthgen.data.prepared import load_split


def test_reader_on_real_bloodmnist(bloodmnist):
    c = MedMNISTReader(str(bloodmnist)).read()
    assert c.images.shape == (11959 + 1712 + 3421, 3, 28, 28)
    assert c.images.dtype == np.float32 and 0 <= c.images.min() and c.images.max() <= 1
    assert c.class_names[0] == "basophil" and len(c.class_names) == 8


def test_prepare_real_pneumonia_keeps_official_splits(pneumoniamnist, tmp_path):
    cfg = compose(["data=medmnist", f"data.path={pneumoniamnist}"])
    out = prepare(cfg, tmp_path / "prepared")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["class_names"] == ["normal", "pneumonia"]
    assert meta["counts"]["train"] == {"normal": 388, "pneumonia": 3494}
    assert sum(meta["counts"]["test"].values()) == 624  # test whole
    assert sum(meta["counts"]["val"].values()) + sum(meta["counts"]["holdout"].values()) == 524
    assert meta["patient_ids"] is False and meta["privacy_reference_split"] == "test"
    assert set(meta["near_duplicates"]["pairs"]) == {"train-val", "train-test", "train-holdout", "val-test",
                                                     "val-holdout", "test-holdout"}
    if CHECK_CONTRACTS.exists():
        r = subprocess.run([sys.executable, str(CHECK_CONTRACTS), "prepared", str(out)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


def test_prepare_is_byte_identical_and_rare_cut(tmp_path):
    src = make_medmnist_npz(tmp_path / "toy.npz", n=120)
    ov = ["data=medmnist", f"data.path={src}", "data.classes=[a,b,c]", "data.rare.classes=[b]", "data.rare.keep=4"]
    a = prepare(compose(ov), tmp_path / "a")
    b = prepare(compose(ov), tmp_path / "b")
    for f in ("train.npz", "val.npz", "test.npz", "holdout.npz", "meta.json", "train_uncut.npz"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    train = load_split(a, "train")
    assert (train.labels == 1).sum() == 4
    assert (load_split(a, "train_uncut").labels == 1).sum() > 4
    assert (load_split(a, "val").labels == 1).sum() > 0  # val stays whole


def test_stage_script_runs_by_hand_with_overrides(tmp_path):
    src = make_medmnist_npz(tmp_path / "toy.npz", channels=3)
    r = run_prepare("data=medmnist", f"data.path={src}", "data.image_size=16",
                     f"paths.prepared={tmp_path / 'out'}")
    assert r.returncode == 0, r.stderr
    assert load_split(tmp_path / "out", "train").images.shape[1:] == (3, 16, 16)


# --- bad input: one line naming the file, exit != 0, nothing left behind ---------------------------

def _expect_error(tmp_path, src, needle):
    expect_prepare_error(tmp_path, ["data=medmnist", f"data.path={src}"], src, needle)


def test_truncated_npz(tmp_path):
    src = make_medmnist_npz(tmp_path / "toy.npz")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    _expect_error(tmp_path, src, "truncated")


def test_npz_without_keys(tmp_path):
    src = tmp_path / "nokeys.npz"
    np.savez(src, images=np.zeros((2, 28, 28), np.uint8))
    _expect_error(tmp_path, src, "missing keys")


def test_npz_nan_pixels(tmp_path):
    src = tmp_path / "nan.npz"
    x = np.full((4, 28, 28), 0.5, np.float32)
    x[0, 0, 0] = np.nan
    y = np.zeros((4, 1), int)
    np.savez(src, train_images=x, train_labels=y, val_images=x, val_labels=y, test_images=x, test_labels=y)
    _expect_error(tmp_path, src, "NaN")


def test_previous_output_survives_a_failed_run(tmp_path):
    good = make_medmnist_npz(tmp_path / "good.npz")
    out = tmp_path / "out"
    assert run_prepare("data=medmnist", f"data.path={good}", f"paths.prepared={out}").returncode == 0
    before = (out / "train.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert run_prepare("data=medmnist", f"data.path={bad}", f"paths.prepared={out}").returncode != 0
    assert (out / "train.npz").read_bytes() == before
