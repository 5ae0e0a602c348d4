"""The one in-memory form every reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Cohort:
    """A labeled image cohort, as read from any source format.

    Attributes:
        images: ``(N, C, H, W)`` float32 in ``[0, 1]`` (normalized by the reader's documented rule), or
            ``(N, C, D, H, W)`` for volumes (``data.dims=3``; axes as in :mod:`synthgen.data.resample`).
        labels: ``(N,)`` int64, indices into ``class_names``.
        class_names: class names in label order.
        patient_ids: ``(N,)`` unicode; images of one patient never straddle splits. Without real ids
            (``has_patient_ids`` False) each image is its own "patient" and the ids only name images.
        sources: ``(N,)`` unicode; the file (and slice, ``file#slice=k``) each image came from,
            relative to the data root.
        splits: ``(N,)`` unicode split names when the source ships its own split (MedMNIST), else None.
        normalization: human-readable statement of the intensity rule, recorded in ``meta.json``.
        storage_dtype: ``"uint8"`` or ``"uint16"``: how ``data/prepared`` stores the intensities
            (8-bit sources keep 8 bits; DICOM/NIfTI/16-bit PNG keep 16).
        has_patient_ids: whether ``patient_ids`` are real patient identifiers (the labels CSV of the
            DICOM/NIfTI/image-folder/demo readers) or stand-ins, one per image (MedMNIST ships none). Only
            with real ids are splits patient-level: without them adjacent slices of one scan can land in
            different splits (see :mod:`synthgen.data.splits`).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    patient_ids: np.ndarray
    sources: np.ndarray
    splits: np.ndarray | None = None
    normalization: str = ""
    storage_dtype: str = "uint8"
    has_patient_ids: bool = True
    source_kind: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.patient_ids = np.asarray(self.patient_ids, dtype=str)
        self.sources = np.asarray(self.sources, dtype=str)
        for name in ("labels", "patient_ids", "sources"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {n} images")
        if self.images.ndim not in (4, 5):
            raise ValueError(f"images must be (N, C, H, W) or, for volumes, (N, C, D, H, W); got {self.images.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> "Cohort":
        """Rows ``index`` (bool mask or integer indices) of every per-image array."""
        return Cohort(
            images=self.images[index], labels=self.labels[index], class_names=list(self.class_names),
            patient_ids=self.patient_ids[index], sources=self.sources[index],
            splits=None if self.splits is None else self.splits[index],
            normalization=self.normalization, storage_dtype=self.storage_dtype,
            has_patient_ids=self.has_patient_ids, source_kind=self.source_kind, extra=dict(self.extra),
        )
