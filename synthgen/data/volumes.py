"""3D readers (``data.dims=3``): NIfTI volumes and DICOM series, one volume per labels-CSV row.

``data=nifti data.dims=3`` reads :class:`NiftiVolumeReader`, ``data=dicom data.dims=3``
:class:`DicomSeriesReader` (the prepare stage swaps the 2D reader for its volume twin,
:data:`VOLUME_READERS`). The labels CSV is ``path,label,patient_id`` (no ``slice`` column): ``path`` is a
NIfTI file, or a folder holding one DICOM series (see :mod:`synthgen.data.dicom_series`).

Each volume is (1) reoriented to canonical RAS and transposed to ``(D, H, W)`` (axial slices, posterior ->
anterior, patient's left -> right; :mod:`synthgen.data.resample`), (2) windowed to ``[0, 1]`` (NIfTI:
``data.window`` or the volume's min..max; DICOM: as the 2D DICOM reader), (3) resampled to
``data.volume.shape`` (null = ``image_size`` on every axis) at ``data.volume.spacing`` (null = resize the
field of view to the shape). Output: a :class:`~synthgen.data.cohort.Cohort` of ``(N, 1, D, H, W)``; the
prepare stage writes ``meta.json`` ``dims: 3``, ``volume_shape`` and ``spacing`` (the configured spacing, or
with ``spacing: null`` the median output spacing over volumes). Storage: uint16.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, InputError
from .cohort import Cohort
from .filecohort import Decoded, FileCohortReader
from .intensity import check_window, linear_window, minmax
from .labels_csv import LabelRow, LabelTable
from .resample import canonical_dhw, resample_volume

#: 2D reader ``_target_`` -> its volume twin, used by the prepare stage when ``data.dims=3``.
VOLUME_READERS = {
    "synthgen.data.nifti.NiftiReader": "synthgen.data.volumes.NiftiVolumeReader",
    "synthgen.data.dicom.DicomReader": "synthgen.data.volumes.DicomSeriesReader",
}


def volume_grid(volume: Mapping[str, Any] | None, image_size: int | None) -> tuple[list[int], list[float] | None]:
    """``data.volume`` (+ ``data.image_size``) -> ``(shape [D, H, W], spacing [sz, sy, sx] mm or None)``."""
    volume = dict(volume or {})
    shape = volume.get("shape")
    if shape is None:
        if image_size is None:
            raise ConfigError("data.volume.shape", "null needs data.image_size (the cube side) for 3D data")
        shape = [int(image_size)] * 3
    try:
        shape = [int(s) for s in shape]
    except (TypeError, ValueError):
        raise ConfigError("data.volume.shape", f"expected [D, H, W], got {shape!r}") from None
    if len(shape) != 3 or min(shape) < 2:
        raise ConfigError("data.volume.shape", f"expected 3 sides >= 2, got {shape}")
    spacing = volume.get("spacing")
    if spacing is not None:
        try:
            spacing = [float(s) for s in spacing]
        except (TypeError, ValueError):
            raise ConfigError("data.volume.spacing", f"expected [sz, sy, sx] mm, got {spacing!r}") from None
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ConfigError("data.volume.spacing", f"expected 3 positive sizes in mm, got {spacing}")
    return shape, spacing


class VolumeReader(FileCohortReader):
    """Base of the CSV-driven volume readers (one ``(1, D, H, W)`` volume per row).

    Args:
        root, labels, classes, workers: see :class:`FileCohortReader`.
        image_size: cube side used when ``volume.shape`` is null.
        window: ``[center, width]`` in the source's units, or None (see the subclass).
        volume: ``{"shape": [D, H, W] | None, "spacing": [sz, sy, sx] | None}`` (``data.volume``).
    """

    kind = "volume"

    def __init__(self, root: str, labels: str = "labels.csv", image_size: int | None = 28,
                 classes: Sequence[str] | None = None, window: Sequence[float] | None = None,
                 workers: int | None = None, volume: Mapping[str, Any] | None = None):
        super().__init__(root, labels, image_size, classes, workers)
        self.window = check_window(window)
        self.shape, self.spacing = volume_grid(volume, image_size)
        self._spacings: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def load_volume(self, table: LabelTable, row: LabelRow) -> tuple[np.ndarray, np.ndarray]:
        """One row -> ``(volume (D, H, W) float32 in [0, 1], spacing [sz, sy, sx] mm)`` in canonical order."""
        raise NotImplementedError

    def source_exists(self, path: Path) -> bool:
        return path.is_file()

    def load_row(self, table: LabelTable, row: LabelRow) -> list[Decoded]:
        vol, spacing = self.load_volume(table, row)
        out, out_spacing = resample_volume(vol[None], spacing, self.shape, self.spacing)
        with self._lock:
            self._spacings[row.path] = out_spacing
        return [(row.path, out)]

    def resize(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 4:
            raise ValueError(f"decoded volume has shape {image.shape}, expected (C, D, H, W)")
        return image  # load_row already resampled it

    def output_spacing(self) -> list[float]:
        """The prepared voxel size ``[sz, sy, sx]``: the configured spacing, else the median over volumes."""
        if self.spacing is not None:
            return [float(s) for s in self.spacing]
        values = np.stack(list(self._spacings.values()))
        return [float(round(v, 6)) for v in np.median(values, axis=0)]

    def extra(self) -> dict:
        return {**super().extra(), "volume_shape": list(self.shape)}

    def read(self) -> Cohort:
        self._spacings.clear()
        cohort = super().read()
        cohort.extra["spacing"] = self.output_spacing()
        spread = np.ptp(np.stack(list(self._spacings.values())), axis=0)
        cohort.extra["spacing_spread"] = [float(round(v, 6)) for v in spread]
        return cohort

    def _resampling(self) -> str:
        grid = "x".join(map(str, self.shape))
        if self.spacing is None:
            return f"resized to {grid} (spacing null: field of view kept; meta spacing = median over volumes)"
        return (f"resampled to spacing {self.spacing} mm then center-cropped/zero-padded to {grid} "
                "(area when shrinking, trilinear when growing)")


class NiftiVolumeReader(VolumeReader):
    """``data=nifti data.dims=3``: one NIfTI volume per row (intensities after scl_slope/scl_inter, then
    ``window`` or the volume's own min..max, to ``[0, 1]``)."""

    kind = "nifti"

    def load_volume(self, table: LabelTable, row: LabelRow) -> tuple[np.ndarray, np.ndarray]:
        import nibabel as nib

        path = table.file(self.root, row)
        try:
            vol, spacing = canonical_dhw(nib.load(str(path)))
        except FileNotFoundError:
            raise InputError(path, "file not found") from None
        except Exception as e:  # nibabel raises several types for truncated/foreign files
            msg = " ".join(str(e).split())
            raise InputError(path, f"not a readable NIfTI volume (truncated or corrupt?): {msg[:300]}") from None
        if not np.isfinite(vol).all():
            raise InputError(path, "voxels contain NaN or Inf")
        y = linear_window(vol, *self.window, out=vol) if self.window else minmax(vol, out=vol)
        return y, spacing

    def normalization(self) -> str:
        win = (f"data.window center={self.window[0]:g} width={self.window[1]:g} (DICOM linear window)"
               if self.window else "the volume's min..max")
        return (f"NIfTI volumes: canonical RAS, (D, H, W) = (S, A, R) axes; intensities (after scl_slope/"
                f"scl_inter) mapped to [0, 1] by {win}; {self._resampling()}; stored as uint16")

    def extra(self) -> dict:
        return {**super().extra(), "modality": "NIfTI"}


class DicomSeriesReader(VolumeReader):
    """``data=dicom data.dims=3``: one DICOM series folder per row (see :mod:`synthgen.data.dicom_series`);
    the folder holds single-frame slices (enhanced multi-frame volumes are not read as series)."""

    kind = "dicom"

    def source_exists(self, path: Path) -> bool:
        return path.is_dir()

    def load_volume(self, table: LabelTable, row: LabelRow) -> tuple[np.ndarray, np.ndarray]:
        from .dicom_series import read_series

        img = read_series(table.file(self.root, row), self.window)
        return canonical_dhw(img)

    def normalization(self) -> str:
        win = (f"data.window center={self.window[0]:g} width={self.window[1]:g}" if self.window
               else "the first slice's WindowCenter/WindowWidth, else the series' min..max")
        return ("DICOM series: slices sorted along the normal of ImageOrientationPatient, modality LUT, DICOM "
                f"linear window to [0, 1] using {win}, MONOCHROME1 inverted; canonical RAS, (D, H, W) = "
                f"(S, A, R) axes; {self._resampling()}; stored as uint16")

    def extra(self) -> dict:
        return {**super().extra(), "modality": "DICOM"}
