"""NIfTI reader: canonical RAS reorientation, the radiological display convention, windowing, errors."""

import nibabel as nib
import numpy as np
import pytest

from conftest import expect_prepare_error, write_labels
from synthgen.data.nifti import NiftiReader
from synthgen.errors import InputError

SHAPE = (6, 5, 4)  # x (to the patient's Right), y (Anterior), z (Superior) in RAS


def _ras_volume():
    """Values 0..; a marker (100) at the right-anterior-superior corner, 50 at left-posterior-inferior."""
    vol = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) % 7
    vol[-1, -1, -1] = 100
    vol[0, 0, 0] = 50
    return vol


def _save(path, data, affine):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _write_orientations(root):
    vol = _ras_volume()
    _save(root / "ras.nii.gz", vol, np.diag([2.0, 2.0, 3.0, 1.0]))
    # The same patient stored LPS-like: x and y flipped on disk, the affine says so.
    lps = np.diag([-2.0, -2.0, 3.0, 1.0])
    lps[:3, 3] = [2.0 * (SHAPE[0] - 1), 2.0 * (SHAPE[1] - 1), 0]
    _save(root / "lps.nii.gz", vol[::-1, ::-1, :].copy(), lps)
    # ... and with the axes permuted on disk: stored as (z, x, y).
    perm = np.zeros((4, 4))
    perm[0, 1], perm[1, 2], perm[2, 0], perm[3, 3] = 2.0, 2.0, 3.0, 1.0
    _save(root / "zxy.nii", np.ascontiguousarray(vol.transpose(2, 0, 1)), perm)


def _read(root, rows, **kw):
    write_labels(root / "labels.csv", rows, header="path,slice,label,patient_id")
    kw.setdefault("image_size", None)
    return NiftiReader(str(root), **kw).read()


def test_axial_slices_come_out_radiological_whatever_the_stored_orientation(tmp_path):
    _write_orientations(tmp_path)
    k = SHAPE[2] - 1  # the superior-most axial slice holds the marker
    c = _read(tmp_path, [(f, k, "a", f"p{i}") for i, f in enumerate(["ras.nii.gz", "lps.nii.gz", "zxy.nii"])])
    assert c.images.shape == (3, 1, SHAPE[1], SHAPE[0])  # rows = anterior..posterior, cols = right..left
    np.testing.assert_array_equal(c.images[1], c.images[0])
    np.testing.assert_array_equal(c.images[2], c.images[0])
    img = c.images[0, 0]
    # Right-anterior marker: top (anterior up) left (patient's right on the image left).
    assert img[0, 0] == 1.0 and img.argmax() == 0
    assert list(c.sources) == [f"ras.nii.gz#slice={k}", f"lps.nii.gz#slice={k}", f"zxy.nii#slice={k}"]


def test_coronal_and_sagittal_conventions(tmp_path):
    _write_orientations(tmp_path)
    cor = _read(tmp_path, [("lps.nii.gz", SHAPE[1] - 1, "a", "p")], slice_axis=1).images[0, 0]
    assert cor.shape == (SHAPE[2], SHAPE[0]) and cor[0, 0] == 1.0  # superior up, patient right on the left
    sag = _read(tmp_path, [("zxy.nii", SHAPE[0] - 1, "a", "p")], slice_axis=0).images[0, 0]
    assert sag.shape == (SHAPE[2], SHAPE[1]) and sag[0, 0] == 1.0  # superior up, anterior on the left
    low = _read(tmp_path, [("ras.nii.gz", 0, "a", "p")]).images[0, 0]
    assert low[-1, -1] == 0.5  # left-posterior marker (50 of 0..100) at bottom right


def test_window_and_per_volume_minmax(tmp_path):
    _write_orientations(tmp_path)
    mm = _read(tmp_path, [("ras.nii.gz", 0, "a", "p")]).images[0, 0]
    assert mm.max() == 0.5  # scaled by the volume's max (100), not the slice's own (50)
    win = _read(tmp_path, [("ras.nii.gz", 0, "a", "p")], window=[3.5, 8]).images[0, 0]
    np.testing.assert_allclose(win[-1, -1], 1.0)  # 50 is above the window
    assert 0 < win.mean() < 1


def test_slice_out_of_range_names_the_csv_row(tmp_path):
    _write_orientations(tmp_path)
    with pytest.raises(InputError, match=r"row 2: slice 9 outside 0\.\.3"):
        _read(tmp_path, [("ras.nii.gz", 9, "a", "p")])


def test_nan_pixels(tmp_path):
    vol = _ras_volume()
    vol[2, 2, 1] = np.nan
    src = _save(tmp_path / "root" / "nan.nii.gz", vol, np.eye(4))
    write_labels(tmp_path / "root" / "labels.csv", [("nan.nii.gz", 1, "a", "p")],
                 header="path,slice,label,patient_id")
    expect_prepare_error(tmp_path, ["data=nifti", f"data.root={tmp_path / 'root'}"], src, "NaN")


def test_truncated_volume_names_the_file(tmp_path):
    src = _save(tmp_path / "cut.nii.gz", _ras_volume(), np.eye(4))
    src.write_bytes(src.read_bytes()[:120])
    with pytest.raises(InputError, match="cut.nii.gz: not a readable NIfTI volume"):
        _read(tmp_path, [("cut.nii.gz", 0, "a", "p")])


def test_volumes_are_decoded_once_and_released_after_their_last_row(tmp_path, monkeypatch):
    import synthgen.data.nifti as nifti

    _write_orientations(tmp_path)
    loads = []  # (file, volumes cached when it was loaded)
    real = nifti.load_canonical
    rows = [("ras.nii.gz", k, "a", "p1") for k in range(4)] + [("lps.nii.gz", k, "a", "p2") for k in range(4)]
    write_labels(tmp_path / "labels.csv", rows, header="path,slice,label,patient_id")
    reader = NiftiReader(str(tmp_path), image_size=None, workers=1)
    monkeypatch.setattr(nifti, "load_canonical", lambda p: loads.append((p.name, len(reader._cache))) or real(p))
    assert len(reader.read()) == 8
    # Each file decoded once; by the time lps is needed, ras (all 4 rows done) has been dropped.
    assert loads == [("ras.nii.gz", 0), ("lps.nii.gz", 0)]
