"""DICOM reader on real DICOM (pydicom's bundled example files) and on files written with chosen bit depths."""

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from conftest import expect_prepare_error, write_labels
from synthgen.data.dicom import DicomReader
from synthgen.data.dicom_writer import write_dicom
from synthgen.errors import InputError


def _copy(tmp_path, name, dest=None):
    dest = tmp_path / "root" / (dest or name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(get_testdata_file(name), dest)
    return dest


def _read(tmp_path, names, **kw):
    write_labels(tmp_path / "root" / "labels.csv", [(n, "a", f"p{i}") for i, n in enumerate(names)])
    kw.setdefault("image_size", None)
    return DicomReader(str(tmp_path / "root"), **kw).read()


def test_ct_small_modality_lut_and_window(tmp_path):
    _copy(tmp_path, "CT_small.dcm")
    c = _read(tmp_path, ["CT_small.dcm"], window=[40, 400])
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert ds.PixelRepresentation == 1 and float(ds.RescaleIntercept) == -1024
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.clip((hu - 39.5) / 399.0 + 0.5, 0, 1)
    assert c.images.shape == (1, 1, 128, 128) and c.storage_dtype == "uint16"
    np.testing.assert_allclose(c.images[0, 0], expected, atol=1e-5)
    assert 0 < c.images.mean() < 1  # the window actually cuts: not all black or white


def test_file_window_is_the_default_and_min_max_without_one(tmp_path):
    _copy(tmp_path, "MR_small.dcm")  # WindowCenter 600 / WindowWidth 1600, no rescale
    own = _read(tmp_path, ["MR_small.dcm"]).images
    explicit = _read(tmp_path, ["MR_small.dcm"], window=[600, 1600]).images
    np.testing.assert_array_equal(own, explicit)
    ds = pydicom.dcmread(tmp_path / "root" / "MR_small.dcm")
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(tmp_path / "root" / "nowin.dcm")
    mm = _read(tmp_path, ["nowin.dcm"]).images
    assert mm.min() == 0 and mm.max() == 1
    px = ds.pixel_array.astype(np.float64)
    np.testing.assert_allclose(mm[0, 0], (px - px.min()) / (px.max() - px.min()), atol=1e-6)


def test_monochrome1_is_inverted(tmp_path):
    # pydicom ships no MONOCHROME1 example: flip the interpretation of a real MR file (same pixels).
    _copy(tmp_path, "MR_small.dcm")
    ds = pydicom.dcmread(tmp_path / "root" / "MR_small.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "root" / "mono1.dcm")
    c = _read(tmp_path, ["MR_small.dcm", "mono1.dcm"])
    np.testing.assert_allclose(c.images[1], 1.0 - c.images[0], atol=1e-6)
    assert np.abs(c.images[1] - c.images[0]).max() > 0.5


@pytest.mark.parametrize("bits,signed", [(8, False), (8, True), (12, False), (12, True), (16, False), (16, True)])
def test_bit_depths_and_signedness(tmp_path, bits, signed):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    stored = np.linspace(lo, hi, 16 * 16).round().astype(np.int64).reshape(16, 16)
    write_dicom(tmp_path / "root" / "x.dcm", stored, bits_stored=bits, signed=signed, rescale=None)
    # Window chosen so the DICOM linear function is exactly (x - lo) / (hi - lo): sign errors would show.
    c = _read(tmp_path, ["x.dcm"], window=[(lo + hi) / 2 + 0.5, hi - lo + 1])
    np.testing.assert_allclose(c.images[0, 0], (stored - lo) / (hi - lo), atol=1e-5)


def test_rescale_slope_intercept_are_applied(tmp_path):
    stored = np.arange(64, dtype=np.int64).reshape(8, 8) * 40
    write_dicom(tmp_path / "root" / "a.dcm", stored, rescale=(1.0, 0.0))
    write_dicom(tmp_path / "root" / "b.dcm", stored // 2, rescale=(2.0, 0.0), uid_key=("b",))
    write_dicom(tmp_path / "root" / "c.dcm", stored + 100, rescale=(1.0, -100.0), uid_key=("c",))
    c = _read(tmp_path, ["a.dcm", "b.dcm", "c.dcm"], window=[1260, 2520])
    np.testing.assert_allclose(c.images[1], c.images[0], atol=1e-6)
    np.testing.assert_allclose(c.images[2], c.images[0], atol=1e-6)


def test_compressed_transfer_syntaxes_decode_like_the_uncompressed_file(tmp_path):
    names = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]
    for n in names:
        _copy(tmp_path, n)
    c = _read(tmp_path, names)
    for k in range(1, len(names)):
        np.testing.assert_array_equal(c.images[k], c.images[0]), names[k]


def test_missing_decoder_names_the_plugin(tmp_path):
    from pydicom.uid import HTJ2KLossless

    src = _copy(tmp_path, "MR_small_jp2klossless.dcm", "htj2k.dcm")
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = HTJ2KLossless  # a syntax whose only decoder (openjpeg) is not installed
    ds.save_as(src)
    from pydicom.pixels import get_decoder

    if get_decoder(HTJ2KLossless).is_available:
        pytest.skip("an HTJ2K decoder is installed here")
    with pytest.raises(InputError, match="pylibjpeg-openjpeg") as e:
        _read(tmp_path, ["htj2k.dcm"])
    assert "htj2k.dcm" in str(e.value)


def test_multiframe_split_and_reject(tmp_path):
    frames = np.stack([np.full((8, 8), v) for v in (0, 1000, 4000)])
    frames[:, 0, 0] = 4095
    write_dicom(tmp_path / "root" / "mf.dcm", frames, bits_stored=12, rescale=None)
    c = _read(tmp_path, ["mf.dcm"], window=[2048, 4096])
    assert list(c.sources) == ["mf.dcm#frame=0", "mf.dcm#frame=1", "mf.dcm#frame=2"]
    assert c.images[0, 0, 1, 1] < c.images[1, 0, 1, 1] < c.images[2, 0, 1, 1]
    with pytest.raises(InputError, match="multi-frame"):
        _read(tmp_path, ["mf.dcm"], multiframe="reject")


def test_resize_and_determinism(tmp_path):
    _copy(tmp_path, "CT_small.dcm")
    _copy(tmp_path, "693_J2KI.dcm")  # 512x512 JPEG 2000 with negative stored values
    a = _read(tmp_path, ["CT_small.dcm", "693_J2KI.dcm"], image_size=32, workers=2)
    b = _read(tmp_path, ["CT_small.dcm", "693_J2KI.dcm"], image_size=32, workers=1)
    assert a.images.shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(a.images, b.images)


# --- bad input through the stage script ------------------------------------------------------------

def _dicom_overrides(tmp_path):
    return ["data=dicom", f"data.root={tmp_path / 'root'}"]


def test_truncated_dicom(tmp_path):
    src = _copy(tmp_path, "CT_small.dcm")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    write_labels(tmp_path / "root" / "labels.csv", [("CT_small.dcm", "a", "p1")])
    expect_prepare_error(tmp_path, _dicom_overrides(tmp_path), src, "truncated")


def test_non_dicom_file(tmp_path):
    src = tmp_path / "root" / "notes.dcm"
    src.parent.mkdir(parents=True)
    src.write_text("this is a radiology report, not an image\n" * 20)
    write_labels(tmp_path / "root" / "labels.csv", [("notes.dcm", "a", "p1")])
    expect_prepare_error(tmp_path, _dicom_overrides(tmp_path), src, "not a DICOM file")


def test_color_dicom_keeps_three_channels_and_ybr_multiframe_splits(tmp_path):
    _copy(tmp_path, "SC_rgb_small_odd.dcm")  # 3x3 RGB, uncompressed
    c = _read(tmp_path, ["SC_rgb_small_odd.dcm"])
    rgb = pydicom.dcmread(get_testdata_file("SC_rgb_small_odd.dcm")).pixel_array
    np.testing.assert_allclose(c.images[0], np.moveaxis(rgb, -1, 0) / 255.0, atol=1e-6)
    _copy(tmp_path, "examples_ybr_color.dcm")  # 30 frames, YBR_FULL_422, JPEG baseline
    c = _read(tmp_path, ["examples_ybr_color.dcm"], image_size=16)
    assert c.images.shape == (30, 3, 16, 16) and c.sources[29] == "examples_ybr_color.dcm#frame=29"


def test_palette_color_is_refused_clearly(tmp_path):
    _copy(tmp_path, "examples_palette.dcm")
    with pytest.raises(InputError, match="unsupported PhotometricInterpretation 'PALETTE COLOR'"):
        _read(tmp_path, ["examples_palette.dcm"])


def test_enhanced_multiframe_functional_groups(tmp_path):
    from pydicom.dataset import Dataset

    from synthgen.data.dicom_writer import build_dataset

    stored = np.stack([np.arange(64).reshape(8, 8) * (k + 1) for k in range(3)])
    ds = build_dataset(stored, bits_stored=12, rescale=None)
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = "2", "-100", "US"
    shared = Dataset()
    shared.PixelValueTransformationSequence = [pvt]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for k in range(3):
        voi, item = Dataset(), Dataset()
        voi.WindowCenter, voi.WindowWidth = str(100 * (k + 1)), "201"
        item.FrameVOILUTSequence = [voi]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    (tmp_path / "root").mkdir()
    ds.save_as(tmp_path / "root" / "enh.dcm", enforce_file_format=True)
    c = _read(tmp_path, ["enh.dcm"])
    for k in range(3):
        v = stored[k] * 2.0 - 100
        c0 = 100 * (k + 1)
        np.testing.assert_allclose(c.images[k, 0], np.clip((v - (c0 - 0.5)) / 200 + 0.5, 0, 1), atol=1e-6)
