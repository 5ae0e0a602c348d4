"""Image-folder reader (``data=imagefolder``): ``data.root`` + a labels CSV ``path,label,patient_id`` over
PNG, JPEG or TIFF files.

Intensity rule: 8-bit images ``x / 255``; 16-bit images (PNG/TIFF ``I;16``) ``x / 65535``; 32-bit integer
images ``x / 65535`` after checking they fit 16 bits; 32-bit float images (TIFF ``F``) their own min..max.
Gray stays 1 channel, RGB 3 (palette images are expanded, alpha is dropped); a folder mixing gray and
color is refused, and so is a 16-bit color PNG (Pillow would silently read it as 8-bit).
Storage: uint16 if any source had more than 8 bits, else uint8 (no precision lost either way).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from .filecohort import Decoded, FileCohortReader
from .intensity import minmax
from .labels_csv import LabelRow, LabelTable

_EIGHT_BIT_MODES = {"L", "RGB", "1", "P", "LA", "RGBA", "CMYK", "YCbCr", "PA", "RGBX", "LAB", "HSV"}


def _png_16bit_color(path: Path) -> bool:
    """True for a 16-bit PNG with color or alpha (IHDR bit depth 16, color type 2, 4 or 6): Pillow would
    silently reduce it to 8 bits."""
    with open(path, "rb") as f:
        head = f.read(26)
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6)


def load_image(path: Path) -> tuple[np.ndarray, int]:
    """Decode one image file -> ``((C, H, W) float32 in [0, 1], source bit depth)``."""
    from PIL import Image, UnidentifiedImageError

    if _png_16bit_color(path):
        raise InputError(path, "16-bit color/alpha PNG: Pillow can only read it as 8-bit, which would lose "
                               "precision; save it as 16-bit grayscale or 8-bit RGB")

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in _EIGHT_BIT_MODES:
                if mode in ("1", "LA", "L"):
                    im = im.convert("L")
                elif mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                if im.mode not in ("L", "RGB"):
                    im = im.convert("RGB")
            arr = np.array(im)
    except UnidentifiedImageError:
        raise InputError(path, "not a readable PNG/JPEG/TIFF image") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(path, f"truncated or corrupt image: {' '.join(str(e).split())}") from None
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = np.moveaxis(arr[..., :3], -1, 0)
    else:
        raise InputError(path, f"image array has shape {arr.shape}; expected gray or RGB")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255), 8
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise InputError(path, "pixels contain NaN or Inf")
        return minmax(arr), 32
    if arr.dtype.kind in "iu":
        if arr.min() < 0 or arr.max() > 65535:
            raise InputError(path, f"integer pixels {arr.min()}..{arr.max()} do not fit 16-bit unsigned")
        return arr.astype(np.float32) / np.float32(65535), 16
    raise InputError(path, f"unsupported pixel type {arr.dtype} (PIL mode {mode})")


class ImageFolderReader(FileCohortReader):
    """Read CSV-listed PNG/JPEG/TIFF images into a :class:`~synthgen.data.cohort.Cohort`.

    Args: see :class:`FileCohortReader`.
    """

    kind = "imagefolder"

    def __init__(self, root: str, labels: str = "labels.csv", image_size: int | None = 28,
                 classes: Sequence[str] | None = None, workers: int | None = None):
        super().__init__(root, labels, image_size, classes, workers)
        self._bits: set[int] = set()  # source bit depths seen while decoding

    def normalization(self) -> str:
        return ("image folder: 8-bit x/255, 16-bit x/65535, float per-image min..max; stored as "
                f"{self.storage_dtype()}")

    def storage_dtype(self) -> str:
        return "uint16" if max(self._bits, default=8) > 8 else "uint8"

    def read(self):
        self._bits.clear()
        return super().read()

    def load_row(self, table: LabelTable, row: LabelRow) -> list[Decoded]:
        img, bits = load_image(table.file(self.root, row))
        self._bits.add(bits)  # set.add is atomic under the GIL: safe from the decoding threads
        return [(row.path, img)]
