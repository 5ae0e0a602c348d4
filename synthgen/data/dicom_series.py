"""One DICOM series (a folder of single-frame slices) -> a nibabel image in RAS world coordinates.

Stacking rule (PS3.3 C.7.6.2, Image Plane module):

* every file in the folder (hidden files skipped) is one slice; all must share SeriesInstanceUID (when
  present), ImageOrientationPatient (IOP), PixelSpacing, Rows and Columns;
* the slice normal is ``n = row_cos x col_cos`` (IOP's two direction cosines); slices are sorted by
  ``ImagePositionPatient . n`` (never by InstanceNumber, which scanners do not always order spatially);
* the slice spacing is the (uniform, within 1%) difference of those positions; IPP steps that leave the
  normal (gantry tilt, a sheared stack) or positions that repeat are refused, as is a non-uniform spacing;
* the LPS affine of the voxel array ``(column j, row i, slice k)`` has columns ``row_cos * PixelSpacing[1]``,
  ``col_cos * PixelSpacing[0]``, ``n * slice_spacing`` and origin the first slice's IPP; the RAS affine is
  ``diag(-1, -1, 1) @ LPS`` (DICOM's patient space is LPS+, NIfTI's RAS+).

Intensity: the modality LUT of each slice (RescaleSlope/Intercept, per file), then DICOM's linear window to
``[0, 1]`` as the 2D reader does (``data.window``, else the first slice's WindowCenter/Width, else the
series' min..max), MONOCHROME1 inverted. The windowed volume is returned as the image's data, so the
caller canonicalizes it exactly like a NIfTI file (:func:`synthgen.data.resample.canonical_dhw`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .dicom import DicomReader, frame_value, read_dicom_pixels
from .intensity import linear_window, minmax

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def series_files(folder: Path) -> list[Path]:
    """The slice files of a series folder (sorted by name; hidden files skipped)."""
    if not folder.is_dir():
        raise InputError(folder, "not a folder: a DICOM series row must name the folder holding its slices")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(folder, "DICOM series folder is empty")
    return files


def _floats(ds, key: str, n: int, path: Path) -> np.ndarray:
    v = ds.get(key)
    try:
        arr = np.asarray([float(x) for x in v], dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape != (n,):
        raise InputError(path, f"{key} missing or malformed ({v!r}): a series needs the Image Plane module")
    return arr


def read_series(folder: Path, window: tuple[float, float] | None):
    """Read, stack and window one series; returns a ``nibabel.Nifti1Image`` (float32 data in ``[0, 1]``,
    RAS affine). Every problem is an :class:`InputError` naming the folder or the offending file."""
    import nibabel as nib

    slices = []
    for path in series_files(folder):
        ds, arr = read_dicom_pixels(path)
        if int(ds.get("NumberOfFrames", 1) or 1) != 1 or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise InputError(path, "a series slice must be a single-frame grayscale image")
        iop = _floats(ds, "ImageOrientationPatient", 6, path)
        ipp = _floats(ds, "ImagePositionPatient", 3, path)
        ps = _floats(ds, "PixelSpacing", 2, path)
        slices.append((path, ds, arr, iop, ipp, ps))
    path0, ds0, arr0, iop0, _, ps0 = slices[0]
    uid0 = ds0.get("SeriesInstanceUID")
    for path, ds, arr, iop, _, ps in slices[1:]:
        if uid0 is not None and ds.get("SeriesInstanceUID") not in (None, uid0):
            raise InputError(path, f"belongs to another series than {path0.name} (SeriesInstanceUID differs): "
                                   "one folder per series")
        if not np.allclose(iop, iop0, atol=1e-4):
            raise InputError(path, f"ImageOrientationPatient {iop.tolist()} differs from {path0.name}'s")
        if not np.allclose(ps, ps0, rtol=1e-4) or arr.shape != arr0.shape:
            raise InputError(path, f"pixel grid {arr.shape} / PixelSpacing {ps.tolist()} differs from "
                                   f"{path0.name}'s {arr0.shape} / {ps0.tolist()}")
    row, col = iop0[:3], iop0[3:]
    normal = np.cross(row, col)
    if not (abs(np.linalg.norm(row) - 1) < 1e-3 and abs(np.linalg.norm(col) - 1) < 1e-3
            and abs(np.dot(row, col)) < 1e-3):
        raise InputError(path0, f"ImageOrientationPatient {iop0.tolist()} is not two orthonormal directions")
    order = np.argsort([np.dot(s[4], normal) for s in slices], kind="stable")
    slices = [slices[i] for i in order]
    spacing = _slice_spacing(folder, [s[4] for s in slices], normal)
    hu = np.stack([DicomReader._rescale(s[2], s[1], 0) for s in slices])  # (K, rows, cols) modality units
    if window is not None:
        y = linear_window(hu, *window, out=hu)
    else:
        c = frame_value(ds0, 0, "FrameVOILUTSequence", "WindowCenter")
        w = frame_value(ds0, 0, "FrameVOILUTSequence", "WindowWidth")
        y = linear_window(hu, c, w, out=hu) if c is not None and w is not None and w > 0 else minmax(hu, out=hu)
    if str(ds0.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        np.subtract(np.float32(1.0), y, out=y)
    lps = np.eye(4)
    lps[:3, 0] = row * ps0[1]
    lps[:3, 1] = col * ps0[0]
    lps[:3, 2] = normal * spacing
    lps[:3, 3] = slices[0][4]
    return nib.Nifti1Image(np.ascontiguousarray(y.transpose(2, 1, 0)), _LPS_TO_RAS @ lps)


def _slice_spacing(folder: Path, positions: list[np.ndarray], normal: np.ndarray) -> float:
    """The uniform distance between consecutive slices along ``normal`` (one slice: 1 mm, or
    SliceThickness is not trusted: a single slice is refused)."""
    if len(positions) < 2:
        raise InputError(folder, "a DICOM series needs at least 2 slices to be read as a volume")
    steps = np.diff(np.stack(positions), axis=0)
    along = steps @ normal
    if np.any(along < 1e-3):
        raise InputError(folder, "two slices share one position along the slice normal (duplicate slice?)")
    off = np.linalg.norm(steps - along[:, None] * normal[None], axis=1)
    if np.any(off > 1e-2 * along + 1e-3):
        raise InputError(folder, "ImagePositionPatient steps leave the slice normal (gantry tilt or a sheared "
                                 "stack): not supported, resample the series first")
    if along.max() - along.min() > 0.01 * along.mean() + 1e-3:
        raise InputError(folder, f"non-uniform slice spacing ({along.min():.3g}..{along.max():.3g} mm; missing "
                                 "slices?): not supported")
    return float(along.mean())
