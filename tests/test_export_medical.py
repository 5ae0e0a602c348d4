"""DICOM and NIfTI copies: pixel round trip, synthetic marking, allow-listed attributes, deterministic UIDs,
dciodvfy (dicom3tools) and dcm2pnm (DCMTK) where installed."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import webdataset as wds
from PIL import Image

from export_fixture import build_audited, export_cfg
from synthgen.stages.export import export
from synthgen.data import dicom_writer as sdicom
from synthgen.export import nifti as snifti

PYDICOM_ROOT = "1.2.826.0.1.3680043.8.498."


def _shard_pixels(out: Path) -> dict[str, np.ndarray]:
    return {s["__key__"]: np.load(io.BytesIO(s["npy"]))
            for s in wds.WebDataset(sorted(map(str, out.glob("*.tar"))), shardshuffle=False)}


@pytest.fixture(scope="module", params=[(1, "uint8"), (1, "uint16"), (3, "uint8")], ids=["u8", "u16", "rgb"])
def exported(request, tmp_path_factory) -> Path:
    channels, dtype = request.param
    root = tmp_path_factory.mktemp(f"med{channels}{dtype}")
    build_audited(root, n=9, size=10, channels=channels, dtype=dtype)
    return export(export_cfg(root, **{"format": "dicom+nifti", "shard_size.samples": 4}))


def test_dicom_and_nifti_read_back_to_the_shard_pixels(exported):
    truth = _shard_pixels(exported)
    assert sorted(p.name for p in (exported / "dicom").iterdir()) == sorted(f"{k}.dcm" for k in truth)
    assert sorted(p.name for p in (exported / "nifti").iterdir()) == sorted(f"{k}.nii.gz" for k in truth)
    for key, x in truth.items():
        ds = pydicom.dcmread(exported / "dicom" / f"{key}.dcm")
        back = ds.pixel_array
        back = back[None] if back.ndim == 2 else back.transpose(2, 0, 1)
        assert back.dtype == x.dtype and np.array_equal(back, x), key
        assert np.array_equal(snifti.read_pixels(exported / "nifti" / f"{key}.nii.gz"), x)
        import nibabel as nib

        img = nib.load(str(exported / "nifti" / f"{key}.nii.gz"))
        data = np.asarray(img.dataobj)  # the documented layout: (W, H, 1) or (W, H, 1, 1, C)
        if x.shape[0] == 1:
            assert data.shape == (10, 10, 1) and np.array_equal(data[:, :, 0].T, x[0])
        else:
            assert data.shape == (10, 10, 1, 1, 3) and np.array_equal(data[:, :, 0, 0, :].transpose(2, 1, 0), x)


def _walk(ds: pydicom.Dataset):
    for el in ds:
        yield el
        if el.VR == "SQ":
            for item in el.value:
                yield from _walk(item)


def test_dicom_is_marked_synthetic_and_built_from_the_allow_list(exported):
    files = sorted((exported / "dicom").iterdir())
    uids = set()
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.SyntheticData == "YES" and list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage and ds.ConversionType == "SYN"
        item = ds.ContributingEquipmentSequence[0]
        code = item.PurposeOfReferenceCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == sdicom.SYNTHESIZING_EQUIPMENT
        assert item.Manufacturer == "synthgen" and item.SoftwareVersions == "synthgen 0.1.0"
        assert item.ManufacturerModelName == "fixture-gan"
        for el in _walk(ds):
            assert not el.tag.is_private
            assert el.keyword in sdicom.ALLOWED_KEYWORDS, el.keyword
            if el.VR in ("DA", "DT", "TM"):
                assert not el.value, el.keyword                      # no dates at all
        assert str(ds.PatientName) == "SYNTHETIC^SAMPLE" and ds.PatientID == "SYNTHETIC"
        assert ds.PatientBirthDate == "" and ds.PatientSex == ""
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
            assert uid.startswith(PYDICOM_ROOT) and uid.is_valid
        uids.add(ds.SOPInstanceUID)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert len(uids) == len(files)
    assert len({pydicom.dcmread(f).StudyInstanceUID for f in files}) == 1


def test_dicom_and_nifti_bytes_are_deterministic(exported, tmp_path):
    root = exported.parents[2]
    again = export(export_cfg(root, **{"format": "dicom+nifti", "shard_size.samples": 4}), out_dir=tmp_path / "x")
    for sub in ("dicom", "nifti"):
        for f in (exported / sub).iterdir():
            assert (again / sub / f.name).read_bytes() == f.read_bytes(), f.name


def test_uids_depend_on_config_hash_and_key_only():
    img = np.zeros((1, 4, 4), dtype=np.uint8)
    kw = dict(name="x", config_hash="h1", generator="g", version="0")
    a = sdicom.sample_dataset(img, "x-a-0000001", "a", 1, **kw)
    b = sdicom.sample_dataset(img + 7, "x-a-0000001", "a", 1, **kw)
    c = sdicom.sample_dataset(img, "x-a-0000002", "a", 1, **kw)
    d = sdicom.sample_dataset(img, "x-a-0000001", "a", 1, **{**kw, "config_hash": "h2"})
    assert a.SOPInstanceUID == b.SOPInstanceUID != c.SOPInstanceUID != d.SOPInstanceUID
    with pytest.raises(ValueError, match="1 or 3 channels"):
        sdicom.sample_dataset(np.zeros((2, 4, 4), np.uint8), "k", "a", 1, **kw)


# dicom3tools releases before the attribute entered the standard's dictionary report Synthetic Data
# (0008,001C) as "not a recognized standard attribute". That one finding is about the validator's
# dictionary, not the file; every other error fails the test.
_UNKNOWN_SYNTHETIC_DATA = "not a recognized standard attribute - (0x0008,0x001c)"


def _dciodvfy_errors(path: Path) -> tuple[list[str], list[str]]:
    r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (r.stdout + r.stderr).splitlines()
    errors = [ln for ln in lines if ln.startswith("Error")]
    return [e for e in errors if _UNKNOWN_SYNTHETIC_DATA not in e], [e for e in errors if _UNKNOWN_SYNTHETIC_DATA in e]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_dciodvfy_reports_no_errors(exported, tmp_path):
    for f in sorted((exported / "dicom").iterdir())[:3]:
        errors, dictionary_gap = _dciodvfy_errors(f)
        assert errors == [], f"{f.name}: {errors}"
        if dictionary_gap:  # prove it is only the dictionary: the same file without the attribute is clean
            ds = pydicom.dcmread(f)
            del ds.SyntheticData
            ds.save_as(tmp_path / "probe.dcm", enforce_file_format=True)
            assert _dciodvfy_errors(tmp_path / "probe.dcm") == ([], [])


@pytest.mark.skipif(shutil.which("dcm2pnm") is None, reason="dcm2pnm (DCMTK) not installed")
def test_dcm2pnm_renders(exported, tmp_path):
    for f in sorted((exported / "dicom").iterdir())[:2]:
        png = tmp_path / f"{f.stem}.png"
        r = subprocess.run(["dcm2pnm", "+on", str(f), str(png)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        shown = np.asarray(Image.open(png))
        x = sdicom.read_pixels(f)
        assert shown.shape[:2] == x.shape[1:]
        if x.dtype == np.uint8:  # no VOI windowing by default: 8-bit pixels render unchanged
            assert np.array_equal(shown, x[0] if x.shape[0] == 1 else x.transpose(1, 2, 0))


@pytest.mark.parametrize("shape,dtype", [((1, 5, 7), np.uint8), ((1, 5, 7), np.uint16), ((3, 5, 7), np.uint8)])
def test_non_square_round_trip(tmp_path, shape, dtype):
    x = np.random.default_rng(0).integers(0, np.iinfo(dtype).max, size=shape).astype(dtype)
    sdicom.save(tmp_path / "a.dcm", sdicom.sample_dataset(x, "k", "a", 1, name="x", config_hash="h",
                                                          generator="g", version="0"))
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    assert (ds.Rows, ds.Columns) == (5, 7) and np.array_equal(sdicom.read_pixels(tmp_path / "a.dcm"), x)
    snifti.write_nifti(tmp_path / "a.nii.gz", x)
    import nibabel as nib

    assert nib.load(str(tmp_path / "a.nii.gz")).shape[:2] == (7, 5)
    assert np.array_equal(snifti.read_pixels(tmp_path / "a.nii.gz"), x)
