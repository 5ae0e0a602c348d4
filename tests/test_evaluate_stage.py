"""End-to-end evaluate stage on a tiny fake cohort: outputs, determinism, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, make_medmnist_npz
from synthgen.config import compose
from synthgen.stages.prepare import prepare
from synthgen.data.prepared import load_split
from synthgen.errors import InputError
from synthgen.io import save_npz
from synthgen.stages.evaluate import run
from synthgen.metrics.synthetic import load_cohort
from synthgen.precision import native_bf16

TINY = ["evaluate.classifier.steps=6", "evaluate.classifier.batch_size=16", "evaluate.classifier.width=8",
        "evaluate.features.steps=6", "evaluate.utility.seeds=[0]", "evaluate.fidelity.kid_subsets=3",
        "evaluate.fidelity.kid_subset_size=20", "evaluate.diversity.pairs_per_class=8", "evaluate.threads=1"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A prepared toy dataset with an active rare cut and a 'synthetic' cohort cut from its val split."""
    tmp = tmp_path_factory.mktemp("ev")
    src = make_medmnist_npz(tmp / "toy.npz", n=160, channels=3)
    data = [f"data.path={src}", "data.classes=[a,b,c]", "data.rare.classes=[b]", "data.rare.keep=6"]
    prepared = prepare(compose(["data=medmnist", *data]), tmp / "prepared")
    val = load_split(prepared, "val", as_float=False)
    save_npz(tmp / "gen" / "cohort.npz", images=np.concatenate([val.images] * 3),
             labels=np.concatenate([val.labels] * 3), seeds=np.arange(3 * len(val.labels), dtype=np.int64))
    (tmp / "gen" / "cohort.json").write_text(json.dumps({"class_names": ["a", "b", "c"]}))
    base = ["data=medmnist", *data, f"paths.prepared={prepared}", f"paths.audited={tmp / 'gen'}",
            f"evaluate.cache_dir={tmp / 'cache'}", *TINY]
    return tmp, base


def _run(tmp, base, name, *extra):
    out = tmp / name
    r = subprocess.run([sys.executable, str(REPO / "pipelines" / "evaluate.py"), *base,
                        f"paths.metrics={out}", f"paths.reports={out}", *extra],
                       cwd=REPO, capture_output=True, text=True)
    return r, out


def test_stage_writes_metrics_plots_and_is_byte_identical(project):
    tmp, base = project
    r1, a = _run(tmp, base, "a")  # by hand, as DVC runs it
    assert r1.returncode == 0, r1.stderr
    m = json.loads((a / "evaluate.json").read_text())
    for arm in ("trtr", "trtr_balanced", "tstr", "trs", "trs_balanced", "full_reference"):
        assert 0.0 <= m["utility"][arm]["accuracy"]["mean"] <= 1.0
        assert set(m["utility"][arm]["recall"]) == {"a", "b", "c"}
    assert m["fidelity"]["fd"] >= 0 and m["fidelity"]["fd_floor"] >= 0
    assert set(m["fidelity"]["floor"]) == {"precision", "recall", "density", "coverage"}
    assert m["diversity"]["ms_ssim_real"] is not None
    assert m["rare"]["classes"] == ["b"] and "gap_closed_rare_recall" in m["rare"]["synthetic"]
    assert "gain_over_oversampling" in m["utility"]
    assert m["bf16"] is native_bf16("cpu")  # evaluate.classifier.bf16=auto (conf/) records what ran
    assert list(tmp.joinpath("cache").glob("feature_extractor-*.pt"))
    for png in ("evaluate_per_class.png", "evaluate_confusion.png"):
        assert (a / png).read_bytes()[:4] == b"\x89PNG"
    # Second run (in-process, cached extractor): same bytes everywhere.
    b = tmp / "b"
    run(compose([*base, f"paths.metrics={b}", f"paths.reports={b}"]))
    for f in ("evaluate.json", "evaluate_per_class.png", "evaluate_confusion.png"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_stage_runs_on_a_cohort_folder_without_rare(project):
    tmp, base = project
    out = tmp / "c"
    run(compose([*base, f"paths.metrics={out}", f"paths.reports={out}", f"evaluate.cohort={tmp / 'gen'}",
                 "evaluate.rare_classes=[]", "evaluate.utility.arms=[trtr,tstr]"]))
    m = json.loads((out / "evaluate.json").read_text())
    assert set(m["utility"]) == {"trtr", "tstr"} and "rare" not in m


def test_missing_cohort_gives_one_line_and_no_output(project):
    tmp, base = project
    r, out = _run(tmp, base, "missing", f"evaluate.cohort={tmp / 'nowhere'}")
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "nowhere" in err[0] and "not found" in err[0], r.stderr
    assert not (out / "evaluate.json").exists()


def test_a_cohort_too_small_to_evaluate_gives_one_line_and_no_output(project):
    tmp, base = project
    val = load_split(tmp / "prepared", "val", as_float=False)
    save_npz(tmp / "tiny" / "cohort.npz", images=val.images[:3], labels=val.labels[:3],
             seeds=np.arange(3, dtype=np.int64))
    (tmp / "tiny" / "cohort.json").write_text(json.dumps({"class_names": ["a", "b", "c"]}))
    r, out = _run(tmp, base, "tiny_out", f"evaluate.cohort={tmp / 'tiny' / 'cohort.npz'}")
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "3 synthetic images" in err[0] and "fidelity.k=5" in err[0], \
        r.stderr
    assert not (out / "evaluate.json").exists()


def test_stage_reads_the_data_sources_symmetries(project):
    tmp, base = project
    r, out = _run(tmp, base, "badsym", "data.symmetries=[hflip,mirror]")
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and "data.symmetries" in err[0] and "rot90" in err[0], r.stderr
    assert not (out / "evaluate.json").exists()
    keys = {}
    for name, sym in (("nosym", "[]"), ("d4", "[rot90,hflip]")):
        run(compose([*base, f"paths.metrics={tmp / name}", f"paths.reports={tmp / name}", f"data.symmetries={sym}",
                     "evaluate.utility.arms=[trtr]"]))
        keys[name] = json.loads((tmp / name / "evaluate.json").read_text())
    assert keys["nosym"]["symmetries"] == [] and keys["d4"]["symmetries"] == ["hflip", "rot90"]
    assert keys["nosym"]["feature_extractor"]["key"] != keys["d4"]["feature_extractor"]["key"]


META = {"channels": 3, "image_size": 28, "dtype": "uint8", "class_names": ["a", "b", "c"]}


@pytest.mark.parametrize("problem,needle", [("keys", "missing keys"), ("shape", "shape"), ("labels", "labels"),
                                            ("dtype", "uint16"), ("classes", "class_names"),
                                            ("corrupt", "truncated")])
def test_bad_cohort_is_an_input_error_naming_the_file(tmp_path, problem, needle):
    path = tmp_path / "cohort.npz"
    images = np.zeros((4, 3, 28, 28), np.uint8)
    labels = np.zeros(4, np.int64)
    if problem == "shape":
        images = np.zeros((4, 1, 28, 28), np.uint8)
    if problem == "labels":
        labels = np.full(4, 7, np.int64)
    if problem == "dtype":
        images = images.astype(np.uint16)
    if problem == "keys":
        save_npz(path, pixels=images)
    else:
        save_npz(path, images=images, labels=labels)
    if problem == "classes":
        (tmp_path / "cohort.json").write_text(json.dumps({"class_names": ["x", "y", "z"]}))
    if problem == "corrupt":
        path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError) as e:
        load_cohort(tmp_path, META)
    assert str(tmp_path) in str(e.value) and needle in str(e.value)
