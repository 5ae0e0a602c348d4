"""The embedded demo cohort: real, valid DICOM (dciodvfy), deterministic, the documented class mix, and
the default prepare stage runs on it with no arguments."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest

from conftest import CHECK_CONTRACTS, REPO, run_prepare
from synthgen.config import compose
from synthgen.data.demo import encode, patient_classes, render_size, write_demo
from synthgen.data.dicom import DicomReader
from synthgen.data.dicom_writer import write_dicom
from synthgen.stages.prepare import prepare
from synthgen.data.prepared import load_split
from synthgen.data.phantom import render, sample_anatomy, sample_finding, sample_view
from synthgen.errors import InputError


def _small() -> dict:
    """A 12-patient demo; the other cohort parameters from conf/data/demo.yaml (write_demo has no defaults)."""
    d = compose(["data=demo"]).data
    return dict(patients=12, images_per_patient=2, source_size=render_size(d.source_size, d.image_size),
                prevalence={k: float(v) for k, v in d.prevalence.items()}, seed=int(d.seed))


SMALL = _small()


def test_files_are_deterministic_and_headers_fake_and_12bit(tmp_path):
    a = write_demo(tmp_path / "a", **SMALL)
    b = write_demo(tmp_path / "b", **SMALL)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len([f for f in files if f.suffix == ".dcm"]) == 24
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    ds = pydicom.dcmread(a / "DEMO-0001" / "img1.dcm")
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 12, 0)
    assert ds.pixel_array.max() <= 4095 and "RescaleSlope" in ds and "RescaleIntercept" in ds
    assert str(ds.PatientName).startswith("PHANTOM") and ds.PatientID == "DEMO-0001" and ds.PatientBirthDate
    assert "DERIVED" in ds.ImageType and ds.ContributingEquipmentSequence[0].PurposeOfReferenceCodeSequence[
        0].CodeValue == "109100"
    photometric = {pydicom.dcmread(p, stop_before_pixels=True).PhotometricInterpretation for p in a.rglob("*.dcm")}
    assert photometric == {"MONOCHROME1", "MONOCHROME2"}


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_dciodvfy_reports_no_errors(tmp_path):
    root = write_demo(tmp_path / "demo", **SMALL)
    for f in sorted(root.rglob("*.dcm")):
        r = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        errors = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, f"{f}: {errors}"


def test_class_mix_rare_class_at_most_3_percent():
    kinds = patient_classes(100, {"normal": 0.55, "nodule": 0.22, "effusion": 0.2, "pneumothorax": 0.03},
                            np.random.default_rng(0))
    counts = {k: kinds.count(k) for k in set(kinds)}
    assert counts == {"normal": 55, "nodule": 22, "effusion": 20, "pneumothorax": 3}
    assert patient_classes(60, {"normal": 0.97, "pneumothorax": 0.03}, np.random.default_rng(0)).count(
        "pneumothorax") == 1  # floor(1.8): never above the share


def test_monochrome1_displays_like_monochrome2_and_rescales_agree(tmp_path):
    rng = np.random.default_rng(3)
    att = render(sample_anatomy(rng), sample_finding("nodule", rng), sample_view(rng))
    for name, (slope, intercept), mono1 in [("a.dcm", (1.0, -1024.0), False), ("b.dcm", (0.75, -1024.0), True),
                                            ("c.dcm", (2.0, -1100.0), True)]:
        write_dicom(tmp_path / name, encode(att, slope, intercept, mono1), rescale=(slope, intercept),
                    window=(500, 3000), photometric="MONOCHROME1" if mono1 else "MONOCHROME2", uid_key=(name,))
    (tmp_path / "labels.csv").write_text("path,label,patient_id\na.dcm,n,p\nb.dcm,n,p\nc.dcm,n,p\n")
    c = DicomReader(str(tmp_path), image_size=None).read()
    # Equal up to the rounding of the stored values (half a slope step, in window units of 1/2999).
    np.testing.assert_allclose(c.images[1], c.images[0], atol=(0.5 + 0.375) / 2999 + 1e-6)
    np.testing.assert_allclose(c.images[2], c.images[0], atol=(0.5 + 1.0) / 2999 + 1e-6)
    np.testing.assert_allclose(c.images[0, 0], att, atol=1e-3)


def test_anatomy_varies_between_patients_and_findings_show():
    rng = np.random.default_rng(0)
    view = sample_view(np.random.default_rng(1))
    a1, a2 = sample_anatomy(rng), sample_anatomy(rng)
    normal = sample_finding("normal", rng)
    assert np.abs(render(a1, normal, view) - render(a2, normal, view)).mean() > 0.02
    for kind in ("nodule", "effusion", "pneumothorax"):
        diff = np.abs(render(a1, sample_finding(kind, rng), view) - render(a1, normal, view))
        assert diff.max() > 0.2, kind


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "scan.dcm").write_bytes(b"x")
    with pytest.raises(InputError, match="refusing to overwrite"):
        write_demo(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "scan.dcm").read_bytes() == b"x"


def test_prepare_on_demo_is_byte_identical(tmp_path):
    ov = [f"data.root={tmp_path / 'demo'}", "data.patients=10", "data.images_per_patient=2"]
    a = prepare(compose(ov), tmp_path / "a")
    b = prepare(compose(ov), tmp_path / "b")
    for f in ("train.npz", "val.npz", "test.npz", "holdout.npz", "meta.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert load_split(a, "train").images.shape[1:] == (1, 28, 28)


def test_edited_folder_is_rewritten(tmp_path):
    root = write_demo(tmp_path / "d", **SMALL)
    f = root / "DEMO-0002" / "img1.dcm"
    good = f.read_bytes()
    f.write_bytes(good[:100])
    write_demo(root, **SMALL)
    assert f.read_bytes() == good


def test_default_prepare_runs_without_arguments(tmp_path):
    # The default config (data=demo) from a fresh folder: params.yaml as committed, no overrides.
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    r = run_prepare(cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "data" / "prepared" / "meta.json").read_text())
    assert meta["class_names"] == ["normal", "nodule", "effusion", "pneumothorax"]
    assert meta["source"]["kind"] == "demo" and meta["dtype"] == "uint16" and meta["image_size"] == 28
    total = sum(sum(c.values()) for c in meta["counts"].values())
    rare = sum(c["pneumothorax"] for c in meta["counts"].values())
    demo = compose(()).data
    assert total == demo.patients * demo.images_per_patient and 0 < rare <= 0.03 * total
    assert meta["counts"]["train"]["pneumothorax"] > 0
    if CHECK_CONTRACTS.exists():
        r = subprocess.run([sys.executable, str(CHECK_CONTRACTS), "prepared", str(tmp_path / "data" / "prepared")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("dims", [2, 3])
def test_demo_writers_refuse_unknown_classes_and_foreign_folders(tmp_path, dims):
    from synthgen.data.demo import write_demo
    from synthgen.data.phantom3d import write_demo3d
    from synthgen.errors import ConfigError, InputError

    def write(root, prevalence):
        if dims == 2:
            return write_demo(root, patients=4, images_per_patient=1, source_size=64, prevalence=prevalence, seed=0)
        return write_demo3d(root, patients=4, source_shape=[16, 16, 16], source_spacing=[2.0, 2.0, 2.0],
                            prevalence=prevalence, seed=0)

    with pytest.raises(ConfigError, match=r"data\.prevalence.*unknown classes \['fracture'\]"):
        write(tmp_path / "new", {"normal": 0.9, "fracture": 0.1})
    foreign = tmp_path / "someone_elses"
    foreign.mkdir()
    (foreign / "scan.dcm").write_bytes(b"not ours")
    with pytest.raises(InputError, match="not a synthgen demo folder"):
        write(foreign, {"normal": 1.0})
    assert (foreign / "scan.dcm").read_bytes() == b"not ours" and not (tmp_path / "new").exists()
