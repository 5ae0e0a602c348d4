"""DICOM reader (``data=dicom``): ``data.root`` + a labels CSV ``path,label,patient_id``, one file per row.

Intensity rule, in this order (recorded in ``meta.json``):

1. decode the stored pixels (pydicom; 8/12/16-bit, signed or unsigned per BitsStored/PixelRepresentation;
   compressed transfer syntaxes through pydicom's plugins, pylibjpeg is a dependency);
2. modality LUT: ``x * RescaleSlope + RescaleIntercept`` in float32 (a Modality LUT Sequence goes through
   ``pydicom.pixels.apply_modality_lut``), e.g. CT Hounsfield units; enhanced multi-frame files take the
   values per frame from their functional groups (per-frame, else shared, else top level);
3. window to ``[0, 1]`` with DICOM's linear VOI function (:func:`synthgen.data.intensity.linear_window`):
   ``data.window=[center, width]`` when given (same units as step 2), else the file's own first
   WindowCenter/WindowWidth (per frame likewise), else the frame's own min..max. Only the linear VOI
   function is applied (a VOI LUT Sequence or SIGMOID function is ignored in favour of the linear window);
4. MONOCHROME1 (minimum = white) is inverted, ``y = 1 - y``, so bright always means dense.

Color files (RGB, or YBR which pydicom converts to RGB) keep 3 channels, scaled by ``2**BitsStored - 1``,
no window. Multi-frame files give one image per frame with source ``file#frame=k`` (k from 0), or are
rejected with ``data.multiframe=reject``. Storage: uint16.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, InputError
from .filecohort import Decoded, FileCohortReader
from .intensity import check_window, linear_window, minmax
from .labels_csv import LabelRow, LabelTable

_GRAY = ("MONOCHROME1", "MONOCHROME2")
_COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")


def _first(value) -> float | None:
    """First value of a possibly multi-valued DS (WindowCenter may hold several)."""
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def frame_value(ds, k: int, group: str, key: str) -> float | None:
    """A numeric attribute for frame ``k``: from the per-frame functional group, else the shared one
    (enhanced multi-frame CT/MR/XA store RescaleSlope and WindowCenter there), else the top level."""
    for name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(name)
        if not groups:
            continue
        item = groups[min(k, len(groups) - 1)] if name.startswith("Per") else groups[0]
        seq = item.get(group)
        if seq and key in seq[0]:
            return _first(seq[0].get(key))
    return _first(ds.get(key))


def decoder_hint(ds) -> str:
    """Which plugin would decode this file's transfer syntax, from pydicom's own decoder registry."""
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is None or not ts.is_compressed:
        return ""
    try:
        from pydicom.pixels import get_decoder

        dec = get_decoder(ts)
    except Exception:
        return f"; transfer syntax {ts.name} ({ts}) has no decoder in pydicom"
    missing = "; ".join(dec.missing_dependencies)
    if dec.is_available:
        return f"; transfer syntax {ts.name} (available plugins {list(dec.available_plugins)} failed"\
               + (f"; others: {missing})" if missing else ")")
    return f"; transfer syntax {ts.name} needs a decoder plugin: install one of: {missing}"


def read_dicom_pixels(path: Path, ds=None) -> tuple[object, np.ndarray]:
    """Read a DICOM file and decode its stored pixels; every failure is an :class:`InputError` naming it.

    Returns:
        ``(dataset, pixels)`` with pixels as pydicom gives them: ``(H, W)``, ``(F, H, W)``, ``(H, W, 3)``
        or ``(F, H, W, 3)``, integer (or float for Float Pixel Data) in stored units.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if ds is None:
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            size = path.stat().st_size
            if size < 132:
                raise InputError(path, f"truncated or not DICOM: only {size} bytes, shorter than the "
                                       "128-byte preamble + 'DICM' marker") from None
            raise InputError(path, "not a DICOM file (no 'DICM' marker after the 128-byte preamble)") from None
        except (EOFError, OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(path, f"truncated or corrupt DICOM header: {' '.join(str(e).split())}") from None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InputError(path, "DICOM file has no pixel data (truncated header, or not an image)")
    try:
        arr = ds.pixel_array
    except Exception as e:
        msg = " ".join(str(e).split())
        if "less than expected" in msg or "truncat" in msg.lower() or "buffer" in msg.lower():
            raise InputError(path, f"truncated DICOM: pixel data shorter than Rows x Columns x frames ({msg})") \
                from None
        raise InputError(path, f"cannot decode pixel data: {msg[:300]}{decoder_hint(ds)}") from None
    return ds, arr


class DicomReader(FileCohortReader):
    """Read DICOM files listed in a labels CSV into a :class:`~synthgen.data.cohort.Cohort`.

    Args:
        root, labels, image_size, classes, workers: see :class:`FileCohortReader`.
        window: ``[center, width]`` in modality-LUT units for every gray image; None = file window or
            min..max (see the module docstring).
        multiframe: ``"split"`` (each frame an image, ``file#frame=k``) or ``"reject"``.
    """

    kind = "dicom"

    def __init__(self, root: str, labels: str = "labels.csv", image_size: int | None = 28,
                 classes: Sequence[str] | None = None, window: Sequence[float] | None = None,
                 multiframe: str = "split", workers: int | None = None):
        super().__init__(root, labels, image_size, classes, workers)
        self.window = check_window(window)
        if multiframe not in ("split", "reject"):
            raise ConfigError("data.multiframe", f"expected 'split' or 'reject', got {multiframe!r}")
        self.multiframe = multiframe

    def normalization(self) -> str:
        win = (f"data.window center={self.window[0]:g} width={self.window[1]:g}" if self.window
               else "the file's first WindowCenter/WindowWidth, else the image's min..max")
        return ("DICOM: modality LUT (RescaleSlope/Intercept), then DICOM linear window to [0, 1] using "
                f"{win}; MONOCHROME1 inverted (1 - y); RGB / 2**BitsStored-1; stored as uint16")

    def extra(self) -> dict:
        return {**super().extra(), "modality": "DICOM"}

    def load_row(self, table: LabelTable, row: LabelRow) -> list[Decoded]:
        path = table.file(self.root, row)
        ds, arr = read_dicom_pixels(path)
        return [(row.path if src is None else f"{row.path}#frame={src}", img)
                for src, img in self.to_unit(path, ds, arr)]

    def to_unit(self, path: Path, ds, arr: np.ndarray) -> list[tuple[int | None, np.ndarray]]:
        """Stored pixels -> ``[(frame or None, (C, H, W) float32 in [0, 1])]`` by the module's rule."""
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        if frames > 1 and self.multiframe == "reject":
            raise InputError(path, f"multi-frame DICOM ({frames} frames) and data.multiframe=reject; "
                                   "use data.multiframe=split to read each frame as an image")
        if frames == 1:
            arr = arr[None]
        if spp == 1 and pi in _GRAY:
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise InputError(path, "pixels contain NaN or Inf")
            lut = None
            if "ModalityLUTSequence" in ds:
                from pydicom.pixels import apply_modality_lut

                lut = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
            out = []
            for k in range(len(arr)):
                v = lut[k] if lut is not None else self._rescale(arr[k], ds, k)  # fresh float32, modified in place
                y = self._window(ds, k, v)
                if pi == "MONOCHROME1":
                    np.subtract(np.float32(1.0), y, out=y)
                out.append((k if frames > 1 else None, y[None]))
            return out
        if spp == 3 and pi in _COLOR:
            top = float(2 ** int(ds.get("BitsStored", 8)) - 1)
            return [(k if frames > 1 else None,
                     np.clip(np.moveaxis(f.astype(np.float32) / np.float32(top), -1, 0), 0, 1))
                    for k, f in enumerate(arr)]
        raise InputError(path, f"unsupported PhotometricInterpretation {pi!r} with SamplesPerPixel={spp}; "
                               "supported: MONOCHROME1, MONOCHROME2, RGB/YBR")

    @staticmethod
    def _rescale(frame: np.ndarray, ds, k: int) -> np.ndarray:
        """Stored -> modality units as a new float32 array: ``x * RescaleSlope + RescaleIntercept`` (in float32,
        a quarter of the memory traffic of pydicom's float64 path), per frame for enhanced multi-frame files."""
        values = frame.astype(np.float32)
        slope = frame_value(ds, k, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = frame_value(ds, k, "PixelValueTransformationSequence", "RescaleIntercept")
        if slope is not None and slope != 1.0:
            values *= np.float32(slope)
        if intercept:
            values += np.float32(intercept)
        return values

    def _window(self, ds, k: int, v: np.ndarray) -> np.ndarray:
        """Modality values of frame ``k`` (float32, overwritten) -> ``[0, 1]`` in place."""
        if self.window is not None:
            return linear_window(v, *self.window, out=v)
        c = frame_value(ds, k, "FrameVOILUTSequence", "WindowCenter")
        w = frame_value(ds, k, "FrameVOILUTSequence", "WindowWidth")
        if c is not None and w is not None and w > 0:
            return linear_window(v, c, w, out=v)
        return minmax(v, out=v)
