"""Image-folder reader: 8/16-bit PNG/TIFF/JPEG, gray and RGB, exact 16-bit precision, errors."""

import numpy as np
from PIL import Image

from conftest import expect_prepare_error, write_labels
from synthgen.config import compose
from synthgen.data.imagefolder import ImageFolderReader
from synthgen.stages.prepare import prepare
from synthgen.data.prepared import load_split


def _png16(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint16)).save(path)
    return path


def test_16bit_png_keeps_every_level(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "root"
    rows = []
    for i in range(24):
        arr = rng.integers(0, 65536, size=(20, 20), dtype=np.uint16)
        arr[0, 0], arr[0, 1] = 0, 65535
        _png16(root / f"img{i}.png", arr)
        rows.append((f"img{i}.png", "ab"[i % 2], f"p{i}"))
    write_labels(root / "labels.csv", rows)
    out = prepare(compose(["data=imagefolder", f"data.root={root}", "data.image_size=null"]), tmp_path / "prep")
    seen = 0
    for split in ("train", "val", "test", "holdout"):
        part = load_split(out, split, as_float=False)
        assert part.images.dtype == np.uint16
        for img, src in zip(part.images, part.sources):
            np.testing.assert_array_equal(img[0], np.array(Image.open(root / src)))
            seen += 1
    assert seen == 24


def test_8bit_gray_rgb_jpeg_and_16bit_tiff(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    gray = (np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)
    Image.fromarray(gray).save(root / "g.png")
    Image.fromarray(gray).save(root / "g.jpg", quality=95)
    write_labels(root / "labels.csv", [("g.png", "a", "p1"), ("g.jpg", "b", "p2")])
    c = ImageFolderReader(str(root), image_size=32).read()
    assert c.images.shape == (2, 1, 32, 32) and c.storage_dtype == "uint8"
    rgb = np.stack([gray, gray[::-1], gray.T], -1)
    Image.fromarray(rgb).save(root / "c.png")
    write_labels(root / "labels.csv", [("c.png", "a", "p1")])
    c = ImageFolderReader(str(root), image_size=None).read()
    np.testing.assert_allclose(c.images[0], np.moveaxis(rgb, -1, 0) / 255.0, atol=1e-7)
    t16 = (np.arange(32 * 32, dtype=np.uint16) * 61).reshape(32, 32)
    Image.fromarray(t16).save(root / "t.tif")
    write_labels(root / "labels.csv", [("t.tif", "a", "p1")])
    c = ImageFolderReader(str(root), image_size=None).read()
    assert c.storage_dtype == "uint16"
    np.testing.assert_array_equal(np.rint(c.images[0, 0] * 65535).astype(np.uint16), t16)


def test_reading_is_deterministic_across_thread_counts(tmp_path):
    root = tmp_path / "root"
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        _png16(root / f"{i}.png", rng.integers(0, 65536, size=(30 + i, 40), dtype=np.uint16))
        rows.append((f"{i}.png", "a", f"p{i}"))
    write_labels(root / "labels.csv", rows)
    a = ImageFolderReader(str(root), image_size=16, workers=1).read()
    b = ImageFolderReader(str(root), image_size=16, workers=4).read()
    np.testing.assert_array_equal(a.images, b.images)
    assert list(a.sources) == [r[0] for r in rows]


def test_mixed_sizes_without_resize(tmp_path):
    root = tmp_path / "root"
    _png16(root / "a.png", np.zeros((20, 20)))
    bad = _png16(root / "b.png", np.zeros((24, 20)))
    write_labels(root / "labels.csv", [("a.png", "x", "p1"), ("b.png", "x", "p2")])
    expect_prepare_error(tmp_path, ["data=imagefolder", f"data.root={root}", "data.image_size=null"], bad,
                         "mixed image sizes")


def test_mixed_channel_counts(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "gray.png")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "color.png")
    write_labels(root / "labels.csv", [("gray.png", "x", "p1"), ("color.png", "x", "p2")])
    expect_prepare_error(tmp_path, ["data=imagefolder", f"data.root={root}", "data.image_size=null"],
                         root / "color.png", "mixed gray and color")


def test_truncated_png_names_the_file(tmp_path):
    import pytest

    from synthgen.errors import InputError

    root = tmp_path / "root"
    src = _png16(root / "cut.png", np.arange(400, dtype=np.uint16).reshape(20, 20) * 100)
    src.write_bytes(src.read_bytes()[:60])
    write_labels(root / "labels.csv", [("cut.png", "x", "p1")])
    with pytest.raises(InputError, match="cut.png: truncated or corrupt image"):
        ImageFolderReader(str(root)).read()


def _png_rgb16(path, arr):
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    h, w, _ = arr.shape
    raw = b"".join(b"\0" + arr[r].astype(">u2").tobytes() for r in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_16bit_color_png_is_refused_not_truncated(tmp_path):
    import pytest

    from synthgen.errors import InputError

    root = tmp_path / "root"
    root.mkdir()
    src = _png_rgb16(root / "rgb16.png", np.full((4, 5, 3), 40000, np.uint16))
    write_labels(root / "labels.csv", [("rgb16.png", "x", "p1")])
    with pytest.raises(InputError, match="rgb16.png: 16-bit color/alpha PNG"):
        ImageFolderReader(str(root)).read()
    assert Image.open(src).size == (5, 4)  # a valid PNG: the refusal is about precision, not corruption
