"""Export stage: the audited cohort as WebDataset shards + index.json + dataset card (+ DICOM/NIfTI)."""

from .stage import export

__all__ = ["export"]
