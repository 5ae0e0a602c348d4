"""Export stage: the audited cohort as WebDataset shards + index.json + dataset card (+ DICOM/NIfTI).

``export`` is imported lazily so that ``synthgen verify`` starts without webdataset/torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export"]


def __getattr__(name: str) -> Any:
    if name == "export":
        from ..stages.export import export

        return export
    raise AttributeError(name)
