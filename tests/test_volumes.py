"""3D input (data.dims=3): NIfTI volumes and DICOM series land in canonical (D, H, W) = (S, A, R) order with
left/right preserved, resampled by the documented rule; the 3D phantom cohort goes through prepare."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from synthgen.config import compose
from synthgen.data.dicom_writer import build_dataset, save
from synthgen.data.resample import crop_or_pad, resample_volume
from synthgen.data.volumes import DicomSeriesReader, NiftiVolumeReader
from synthgen.errors import ConfigError, InputError
from synthgen.stages.prepare import build_reader, prepare

SHAPE, SPACING = (10, 12, 14), (3.0, 2.0, 1.5)  # (D, H, W) voxels, [sz, sy, sx] mm
MARK = (8, 9, 2)  # superior, anterior, patient's LEFT (small W)


def _canonical_with_marker() -> np.ndarray:
    v = np.zeros(SHAPE, dtype=np.float32)
    v[2:8, 3:9, 3:11] = 100.0
    v[MARK] = 1000.0
    return v


def _write_nifti(path: Path, v: np.ndarray, flips: tuple[int, int, int]) -> None:
    """Store canonical ``v`` (D, H, W) with the RAS axes in ``flips`` reversed (e.g. LAS, LPS)."""
    data = v.transpose(2, 1, 0)
    aff = np.diag([SPACING[2], SPACING[1], SPACING[0], 1.0])
    aff[:3, 3] = [-20.0, 5.0, 100.0]
    for axis, f in enumerate(flips):
        if f < 0:
            data = np.flip(data, axis)
            aff[:3, 3] += aff[:3, axis] * (data.shape[axis] - 1)
            aff[:3, axis] *= -1
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data).astype(np.int16), aff), str(path))


@pytest.mark.parametrize("flips", [(1, 1, 1), (-1, 1, 1), (-1, -1, 1), (1, -1, -1)], ids=["RAS", "LAS", "LPS", "RPI"])
def test_nifti_marker_in_the_patients_left_stays_there(tmp_path, flips):
    _write_nifti(tmp_path / "p1.nii.gz", _canonical_with_marker(), flips)
    (tmp_path / "labels.csv").write_text("path,label,patient_id\np1.nii.gz,a,P1\n")
    reader = NiftiVolumeReader(str(tmp_path), workers=1, volume={"shape": list(SHAPE), "spacing": list(SPACING)})
    cohort = reader.read()
    assert cohort.images.shape == (1, 1, *SHAPE)
    assert np.unravel_index(np.argmax(cohort.images[0, 0]), SHAPE) == MARK
    assert cohort.extra["spacing"] == list(SPACING)


def test_resample_rules():
    v = np.zeros((1, 10, 12, 14), dtype=np.float32)
    v[0, 4:6, 5:7, 6:8] = 1.0
    out, sp = resample_volume(v, SPACING, (5, 6, 7), None)  # resize: field of view kept
    assert out.shape == (1, 5, 6, 7) and np.allclose(sp, [6.0, 4.0, 3.0])
    assert np.isclose(out.sum() * 8, v.sum())  # area averaging keeps the mass of a 2x-shrunk volume
    out, sp = resample_volume(v, SPACING, (8, 8, 8), [6.0, 2.0, 1.0])  # spacing, then crop/pad
    assert out.shape == (1, 8, 8, 8) and list(sp) == [6.0, 2.0, 1.0]
    assert 0.0 <= out.min() and out.max() <= 1.0
    # resampled size is (5, 12, 21): D padded 1 + 2, H cropped by 2 each side, W cropped by 6 + 7
    assert crop_or_pad(np.ones((1, 5, 12, 21)), (8, 8, 8))[0, :, 0, 0].tolist() == [0, 1, 1, 1, 1, 1, 0, 0]


def _world_value(p: np.ndarray) -> np.ndarray:
    """HU at LPS points ``(..., 3)``: a body sphere and a bright marker at the patient's left, anterior, superior."""
    body = np.linalg.norm(p, axis=-1) <= 55.0
    mark = np.linalg.norm(p - np.array([40.0, -30.0, 30.0]), axis=-1) <= 9.0  # LPS: +x left, -y anterior, +z sup.
    return np.where(mark, 1500.0, np.where(body, 40.0, -1000.0))


def _write_series(folder: Path, order: np.ndarray, tilt_deg: float = 20.0, rows: int = 32, step: float = 5.0) -> None:
    """An oblique (rotated about the patient's left-right axis, no gantry tilt) CT series; file k holds the
    slice ``order[k]`` with InstanceNumber ``k + 1`` (so InstanceNumber says nothing about position)."""
    t = np.deg2rad(tilt_deg)
    row, col = np.array([1.0, 0, 0]), np.array([0, np.cos(t), np.sin(t)])
    normal = np.cross(row, col)
    k_n, ps = 20, 4.0
    for k, s in enumerate(order):
        ipp = -(rows / 2) * ps * row - (rows / 2) * ps * col + (s - k_n / 2) * step * normal
        i, j = np.meshgrid(np.arange(rows), np.arange(rows), indexing="ij")
        pts = ipp + j[..., None] * ps * row + i[..., None] * ps * col
        stored = (_world_value(pts) + 1024).astype(np.uint16)
        ds = build_dataset(stored, bits_stored=12, rescale=(1.0, -1024.0), window=(0.0, 2000.0),
                           uid_key=("series-test", int(s)), series_key=("series-test",), instance_number=k + 1)
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *col)]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        ds.PixelSpacing = [f"{ps:g}", f"{ps:g}"]
        save(folder / f"x{(k * 7919) % 97:03d}.dcm", ds)


def test_dicom_series_sorted_along_the_normal_with_left_right_kept(tmp_path):
    shuffled = np.random.default_rng(3).permutation(20)
    _write_series(tmp_path / "s1", shuffled)
    _write_series(tmp_path / "s2", np.arange(20)[::-1])
    (tmp_path / "labels.csv").write_text("path,label,patient_id\ns1,a,P1\ns2,a,P2\n")
    reader = DicomSeriesReader(str(tmp_path), workers=1, volume={"shape": [16, 16, 16], "spacing": None})
    cohort = reader.read()
    a, b = cohort.images[:, 0]
    np.testing.assert_allclose(a, b, atol=1e-6)  # file / InstanceNumber order does not matter
    d, h, w = np.argwhere(a > 0.9).mean(axis=0)  # the marker (window 0/2000: 1500 HU -> 1.0)
    # modality LUT then the file's window 0/2000: soft tissue 40 HU -> 0.52 (raw stored 1064 would saturate)
    assert np.median(a[(a > 0.3) & (a < 0.9)]) == pytest.approx((40 + 0.5) / 1999 + 0.5, abs=0.02)
    assert w < 6, "the marker sits in the patient's left, which is the low W half"
    assert h > 9, "anterior is the high H half"
    assert d > 9, "superior is the high D half (slices stacked along the normal, not by InstanceNumber)"
    assert cohort.extra["spacing"] == pytest.approx([100 / 16, 128 / 16, 128 / 16], rel=0.15)


def test_dicom_series_bad_stacks_are_refused(tmp_path):
    _write_series(tmp_path / "dup", np.array([0, 1, 2, 2, 3]))
    with pytest.raises(InputError, match="share one position"):
        from synthgen.data.dicom_series import read_series

        read_series(tmp_path / "dup", None)
    _write_series(tmp_path / "gap", np.array([0, 1, 2, 4, 5]))
    with pytest.raises(InputError, match="non-uniform slice spacing"):
        read_series(tmp_path / "gap", None)


def test_dims_selects_the_volume_reader_and_refuses_2d_only_sources(tmp_path):
    nifti = compose(["data=nifti", f"data.root={tmp_path}", "data.dims=3", "data.volume.shape=[4,5,6]"]).data
    reader = build_reader(nifti)
    assert isinstance(reader, NiftiVolumeReader) and reader.shape == [4, 5, 6]
    assert isinstance(build_reader(compose(["data=dicom", f"data.root={tmp_path}", "data.dims=3"]).data),
                      DicomSeriesReader)
    with pytest.raises(ConfigError, match="2D images only"):
        build_reader(compose(["data=medmnist", "data.path=/x.npz", "data.dims=3"]).data)
    with pytest.raises(ConfigError, match="set data.dims=3"):
        build_reader(compose(["data=demo3d", "data.dims=2"]).data)


def test_demo3d_prepare_writes_the_3d_contract(tmp_path):
    ov = ["data=demo3d", f"data.root={tmp_path / 'demo3d'}", "data.patients=24", "data.image_size=16",
          "data.source_shape=[16,16,16]", "data.source_spacing=[20,20,21]", "data.split.near_copy_pearson=null"]
    out = prepare(compose(ov), tmp_path / "prepared")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dims"] == 3 and meta["volume_shape"] == [16, 16, 16] and meta["spacing"] == [20.0, 20.0, 21.0]
    assert meta["source"]["kind"] == "demo3d" and sum(meta["counts"]["train"].values()) > 0
    pids = {}
    for split in ("train", "val", "test", "holdout"):
        with np.load(out / f"{split}.npz") as z:
            assert z["images"].ndim == 5 and z["images"].shape[1:] == (1, 16, 16, 16)
            assert z["images"].dtype == np.uint16
            pids[split] = set(z["patient_ids"].tolist())
    assert sum(len(p) for p in pids.values()) == len(set().union(*pids.values())) == 24  # patient-disjoint
    files = sorted((tmp_path / "demo3d").rglob("*.nii.gz"))
    assert len(files) == 24 and {nib.aff2axcodes(nib.load(str(f)).affine) for f in files} > {("R", "A", "S")}
