"""NIfTI reader (``data=nifti``): ``data.root`` + a labels CSV ``path,slice,label,patient_id``.

Orientation: each volume is reoriented to the closest canonical RAS+ orientation
(``nibabel.as_closest_canonical``: array axis 0 runs to the patient's Right, 1 to Anterior, 2 to
Superior) before ``slice`` indexes ``data.slice_axis`` (default: the last axis = axial slices).

2D display convention (radiological, as a PACS shows it): with the two remaining RAS axes ``a < b``, the
slice ``s`` of shape ``(len_a, len_b)`` becomes ``s.T[::-1, ::-1]``, i.e. image rows run from +b at the top
(Superior for coronal/sagittal, Anterior for axial) and image columns run from +a on the left:

* axial (axis 2): anterior up, patient's right on the image left;
* coronal (axis 1): superior up, patient's right on the image left;
* sagittal (axis 0): superior up, anterior on the image left.

Intensity rule: values as stored after nibabel's scaling (scl_slope/scl_inter); then ``data.window=[center,
width]`` (same linear window as DICOM) when given, else the volume's min..max over all voxels (one mapping
per volume, so slices of one volume stay comparable). 4D volumes must have a 4th axis of length 1.
Sources: ``file#slice=k`` (k = the CSV value, in canonical orientation). Storage: uint16.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, InputError
from .filecohort import Decoded, FileCohortReader
from .intensity import check_window, linear_window, minmax
from .labels_csv import LabelRow, LabelTable


def to_display(slice_2d: np.ndarray) -> np.ndarray:
    """A canonical-RAS slice ``(len_a, len_b)`` -> the radiological 2D image ``(len_b, len_a)`` (see module)."""
    return np.ascontiguousarray(slice_2d.T[::-1, ::-1])


def load_canonical(path: Path) -> np.ndarray:
    """Load a NIfTI file reoriented to canonical RAS+, as float32 ``(X, Y, Z)``; errors name the file."""
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Exception as e:  # nibabel raises several types for truncated/foreign files
        msg = " ".join(str(e).split())
        raise InputError(path, f"not a readable NIfTI volume (truncated or corrupt?): {msg[:300]}") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise InputError(path, f"volume has shape {data.shape}; expected 3D (or 4D with one volume)")
    return data


class NiftiReader(FileCohortReader):
    """Read CSV-listed slices of NIfTI volumes into a :class:`~synthgen.data.cohort.Cohort`.

    Args:
        root, labels, image_size, classes, workers: see :class:`FileCohortReader`.
        slice_axis: canonical RAS axis the CSV ``slice`` indexes (0 sagittal, 1 coronal, 2 axial);
            -1 / None = the last axis.
        window: ``[center, width]`` in stored (scaled) units; None = per-volume min..max.
    """

    kind = "nifti"
    with_slice = True

    def __init__(self, root: str, labels: str = "labels.csv", image_size: int | None = 28,
                 classes: Sequence[str] | None = None, slice_axis: int | None = -1,
                 window: Sequence[float] | None = None, workers: int | None = None):
        super().__init__(root, labels, image_size, classes, workers)
        axis = -1 if slice_axis is None else int(slice_axis)
        if axis not in (-3, -2, -1, 0, 1, 2):
            raise ConfigError("data.slice_axis", f"expected 0, 1, 2 or -1, got {slice_axis!r}")
        self.slice_axis = axis % 3
        self.window = check_window(window)
        # Several rows usually share a volume: decode each file once (a per-file lock keeps threads from
        # loading it twice) and drop it after its last row, so memory holds only the volumes in use.
        self._cache: dict[str, tuple[np.ndarray, float, float]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._pending: dict[str, int] = {}
        self._guard = threading.Lock()

    def normalization(self) -> str:
        win = (f"data.window center={self.window[0]:g} width={self.window[1]:g} (DICOM linear window)"
               if self.window else "the volume's min..max")
        return (f"NIfTI: canonical RAS, slice axis {self.slice_axis}, radiological display "
                f"(s.T[::-1, ::-1]); intensities (after scl_slope/scl_inter) mapped to [0, 1] by {win}; "
                "stored as uint16")

    def extra(self) -> dict:
        return {**super().extra(), "modality": "NIfTI", "slice_axis": self.slice_axis}

    def _volume(self, path: Path) -> tuple[np.ndarray, float, float]:
        key = str(path)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                vol = load_canonical(path)
                if not np.isfinite(vol).all():
                    raise InputError(path, "pixels contain NaN or Inf")
                self._cache[key] = (vol, float(vol.min()), float(vol.max()))
            return self._cache[key]

    def read(self):
        try:
            return super().read()
        finally:
            self._cache.clear()
            self._pending.clear()

    def _done_with(self, table: LabelTable, path: Path) -> None:
        """Count one row of ``path`` as done; evict the volume after the last one."""
        key = str(path)
        with self._guard:
            if not self._pending:
                for r in table.rows:
                    k = str(table.file(self.root, r))
                    self._pending[k] = self._pending.get(k, 0) + 1
            self._pending[key] -= 1
            if self._pending[key] == 0:
                self._cache.pop(key, None)

    def load_row(self, table: LabelTable, row: LabelRow) -> list[Decoded]:
        path = table.file(self.root, row)
        try:
            return self._slice(table, row, path)
        finally:
            self._done_with(table, path)

    def _slice(self, table: LabelTable, row: LabelRow, path: Path) -> list[Decoded]:
        vol, lo, hi = self._volume(path)
        n = vol.shape[self.slice_axis]
        if row.slice >= n:
            raise InputError(table.csv_path, f"row {row.row}: slice {row.slice} outside 0..{n - 1} of "
                                             f"{row.path} along canonical axis {self.slice_axis} "
                                             f"(RAS shape {vol.shape})")
        s = to_display(np.take(vol, row.slice, axis=self.slice_axis))
        y = linear_window(s, *self.window) if self.window else minmax(s, lo, hi)
        return [(f"{row.path}#slice={row.slice}", y[None])]
