"""``curate.plan.validation``: the boost plan validates on a file the user names (e.g. another site's images)
instead of the prepared val split; the file is checked (format, shape, labels) and refused when it is the test
split or shares an image with test or train. The stage records the source in boost.json and the card."""

import json
import shutil

import numpy as np
import pytest

from conftest import make_medmnist_npz
from synthgen.config import compose
from synthgen.curation.plan_validation import load_plan_validation
from synthgen.data.prepared import load_split
from synthgen.errors import ConfigError, InputError
from synthgen.export.card import boost_section
from synthgen.io import save_npz, write_json
from synthgen.stages.curate import curate
from synthgen.stages.prepare import prepare

NAMES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pv")
    src = make_medmnist_npz(tmp / "toy.npz", n=160, channels=1)
    ov = ["data=medmnist", f"data.path={src}", "data.classes=[a,b,c]", f"paths.prepared={tmp / 'prepared'}"]
    prepare(compose(ov), tmp / "prepared")
    return tmp, ov


def _site_b(prepared_dir, out, shift: int = 7):
    """Another 'site': the prepared val images, brightened (no byte equal to any prepared image)."""
    with np.load(prepared_dir / "val.npz") as z:
        d = {k: z[k] for k in z.files}
    d["images"] = np.clip(d["images"].astype(np.int16) + shift, 0, 255).astype(np.uint8)
    np.savez(out, **d)
    return out, d


def test_default_is_the_prepared_val_split(prepared):
    tmp, _ = prepared
    v = load_plan_validation(tmp / "prepared", None, NAMES, ["b"])
    val = load_split(tmp / "prepared", "val")
    assert v.source == "prepared val split" and np.array_equal(v.images.labels, val.labels)
    assert np.array_equal(v.images.images.numpy(), val.images)
    assert sum(v.counts.values()) == len(val.labels)


def test_a_file_of_another_site_is_read_in_0_1(prepared, tmp_path):
    tmp, _ = prepared
    path, d = _site_b(tmp / "prepared", tmp_path / "site_b.npz")
    v = load_plan_validation(tmp / "prepared", path, NAMES, ["b"])
    assert v.source == str(path) and v.images.images.dtype.is_floating_point
    np.testing.assert_array_equal(v.images.images.numpy(), d["images"].astype(np.float32) / 255)
    assert v.counts == {n: int((d["labels"] == i).sum()) for i, n in enumerate(NAMES)}
    assert v.describe()["n"] == len(d["labels"])


@pytest.mark.parametrize("which", ["test", "train"])
def test_a_file_sharing_images_with_test_or_train_is_refused(prepared, tmp_path, which):
    tmp, _ = prepared
    path, d = _site_b(tmp / "prepared", tmp_path / "mixed.npz")
    with np.load(tmp / "prepared" / f"{which}.npz") as z:
        d["images"][:2] = z["images"][:2]                       # two images leaked from that split
    np.savez(path, **d)
    with pytest.raises(ConfigError, match=rf"curate.plan.validation.*shares 2 image\(s\) with the prepared {which}"):
        load_plan_validation(tmp / "prepared", path, NAMES, ["b"])


def test_the_test_split_itself_or_a_copy_is_refused(prepared, tmp_path):
    tmp, _ = prepared
    with pytest.raises(ConfigError, match="is the test split"):
        load_plan_validation(tmp / "prepared", tmp / "prepared" / "test.npz", NAMES, ["b"])
    copy = shutil.copy(tmp / "prepared" / "test.npz", tmp_path / "holdout_site.npz")
    with pytest.raises(ConfigError, match="shares .* with the prepared test split"):
        load_plan_validation(tmp / "prepared", copy, NAMES, ["b"])


def test_bad_files_stop_with_one_line_naming_the_file(prepared, tmp_path):
    tmp, _ = prepared
    with pytest.raises(ConfigError, match="no such file"):
        load_plan_validation(tmp / "prepared", tmp_path / "absent.npz", NAMES, ["b"])
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(InputError, match="junk.npz.*not an npz"):
        load_plan_validation(tmp / "prepared", tmp_path / "junk.npz", NAMES, ["b"])
    path, d = _site_b(tmp / "prepared", tmp_path / "b.npz")
    np.savez(tmp_path / "small.npz", images=d["images"][:, :, :14, :14], labels=d["labels"])
    with pytest.raises(InputError, match="small.npz.*prepared training split is uint8"):
        load_plan_validation(tmp / "prepared", tmp_path / "small.npz", NAMES, ["b"])
    np.savez(tmp_path / "labels.npz", images=d["images"], labels=d["labels"] + 3)
    with pytest.raises(InputError, match=r"labels.npz.*labels must be .* integers in \[0, 3\)"):
        load_plan_validation(tmp / "prepared", tmp_path / "labels.npz", NAMES, ["b"])
    keep = d["labels"] != 1
    np.savez(tmp_path / "no_b.npz", images=d["images"][keep], labels=d["labels"][keep])
    with pytest.raises(ConfigError, match=r"no images of the boosted class\(es\) \['b'\]"):
        load_plan_validation(tmp / "prepared", tmp_path / "no_b.npz", NAMES, ["b"])


def test_the_stage_plans_on_the_named_file_and_says_so(prepared, tmp_path):
    """The curate stage with the plan on and a second site's file: boost.json and cohort.json name the source,
    and the card says the images were chosen on that file (its name only, no machine path)."""
    tmp, ov = prepared
    val, train = load_split(tmp / "prepared", "val", False), load_split(tmp / "prepared", "train", False)
    cand = np.flatnonzero(train.labels == 1)[:8]
    ordinary = np.flatnonzero(val.labels != 1)
    images = np.concatenate([val.images[ordinary], train.images[cand]])
    labels = np.concatenate([val.labels[ordinary], train.labels[cand]])
    gen = tmp_path / "generated"
    save_npz(gen / "cohort.npz", images=images, labels=labels, seeds=np.arange(len(images), dtype=np.int64),
             guidance=np.ones(len(images), np.float32),
             boost_candidate=np.r_[np.zeros(len(ordinary), bool), np.ones(len(cand), bool)])
    write_json(gen / "cohort.json", {"generator": "test", "class_names": NAMES})
    site_b, d = _site_b(tmp / "prepared", tmp_path / "site_b.npz")
    cfg = compose(ov + [f"paths.generated={gen}", f"paths.curated={tmp_path / 'curated'}",
                        f"paths.metrics={tmp_path / 'metrics'}", f"evaluate.cache_dir={tmp_path / 'cache'}",
                        "evaluate.features.steps=20", "evaluate.classifier.width=8", "curate.classes=[b]",
                        "curate.plan.amounts=[1]", "curate.plan.shares=[0.5]", "curate.plan.seeds=[0,1]",
                        "curate.plan.steps=3", "curate.plan.batch_size=16", f"curate.plan.validation={site_b}"])
    curate(cfg)
    boost = json.loads((tmp_path / "metrics" / "boost.json").read_text())
    assert boost["validation"] == {"source": str(site_b), "n": len(d["labels"]),
                                   "per_class": {n: int((d["labels"] == i).sum()) for i, n in enumerate(NAMES)}}
    assert boost["classes"]["b"]["n_val"] == int((d["labels"] == 1).sum())
    meta = json.loads((tmp_path / "curated" / "cohort.json").read_text())
    assert meta["curation"]["plan_validation"] == str(site_b)
    card = "\n".join(boost_section(meta))
    assert "real validation images from `site_b.npz` (`curate.plan.validation`)" in card
    assert str(tmp_path) not in card


def test_shifted_validation_benchmark_splits_test_and_drops_shared_copies(prepared, tmp_path):
    """benchmarks/shifted_validation.py: half of test becomes site_val.npz, the other half the test split; an
    image that occurs in both halves is dropped from site_val, so the plan's guard accepts the file."""
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO))
    from benchmarks.shifted_validation import split_test

    tmp, _ = prepared
    src = tmp_path / "src"
    shutil.copytree(tmp / "prepared", src)
    with np.load(src / "test.npz") as z:
        d = {k: z[k] for k in z.files}
    for k in range(6):                                            # byte-identical pairs inside test
        d["images"][2 * k + 1], d["labels"][2 * k + 1] = d["images"][2 * k], d["labels"][2 * k]
    np.savez(src / "test.npz", **d)
    counts = split_test(src, tmp_path / "out", seed=0)
    with np.load(tmp_path / "out" / "site_val.npz") as a, np.load(tmp_path / "out" / "prepared" / "test.npz") as b:
        n_a, n_b = len(a["labels"]), len(b["labels"])
        assert set(map(bytes, a["images"].reshape(n_a, -1))).isdisjoint(map(bytes, b["images"].reshape(n_b, -1)))
    n = len(d["labels"])
    assert n_b == sum(counts["test"].values()) and n_a == sum(counts["site_val"].values())
    assert counts["site_val_dropped_copies"]["n"] >= 1            # seed 0 splits at least one planted pair
    assert n_a + n_b + counts["site_val_dropped_copies"]["n"] == n and n_b >= n // 2 - len(NAMES)
    v = load_plan_validation(tmp_path / "out" / "prepared", tmp_path / "out" / "site_val.npz", NAMES, ["b"])
    assert sum(v.counts.values()) == n_a
    assert not (tmp_path / "out.tmp").exists()
