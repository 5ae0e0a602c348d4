"""The ``data/prepared`` contract: what the prepare stage writes and every later stage reads.

Layout (checked by ``shared/tools/check_contracts.py prepared``)::

    data/prepared/
      train.npz val.npz test.npz holdout.npz   # keys: images (N, C, H, W) uint8|uint16,
                                               #       labels (N,) int64, patient_ids (N,) str,
                                               #       sources (N,) str (relative to data.root)
      train_uncut.npz                          # only with data.rare active: train before the cut
      meta.json                                # class_names, counts per split x class, image_size,
                                               # channels, dtype, source, normalization, rare,
                                               # patient_ids (bool), split_policy (text),
                                               # privacy_reference_split, near_duplicates

Intensities: ``float = stored / max(dtype)`` gives the reader's ``[0, 1]`` normalization back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InputError
from ..io import save_npz, write_json
from .cohort import Cohort
from .splits import SPLITS
from .transforms import dequantize, quantize


def class_counts(labels: np.ndarray, class_names: list[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    return {name: int(counts[i]) for i, name in enumerate(class_names)}


def write_split(path: Path, cohort: Cohort) -> None:
    save_npz(path, images=quantize(cohort.images, cohort.storage_dtype), labels=cohort.labels,
             patient_ids=cohort.patient_ids, sources=cohort.sources)


def write_prepared(out_dir: Path, parts: Mapping[str, Cohort], meta: Mapping[str, Any]) -> None:
    """Write every split in ``parts`` plus ``meta.json`` into ``out_dir`` (which should be a temp dir)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        write_split(out_dir / f"{name}.npz", part)
    write_json(out_dir / "meta.json", dict(meta))


def load_meta(prepared_dir: str | os.PathLike) -> dict:
    p = Path(prepared_dir) / "meta.json"
    if not p.exists():
        raise InputError(p, "missing: run the prepare stage first (dvc repro prepare)")
    return json.loads(p.read_text())


def load_split(prepared_dir: str | os.PathLike, split: str, as_float: bool = True) -> Cohort:
    """Read one split back as a :class:`Cohort` (``as_float``: images float32 in ``[0, 1]``)."""
    prepared_dir = Path(prepared_dir)
    meta = load_meta(prepared_dir)
    p = prepared_dir / f"{split}.npz"
    if not p.exists():
        raise InputError(p, f"missing split {split!r}")
    with np.load(p, allow_pickle=False) as z:
        images = z["images"]
        return Cohort(
            images=dequantize(images) if as_float else images,
            labels=z["labels"], class_names=list(meta["class_names"]),
            patient_ids=z["patient_ids"], sources=z["sources"],
            normalization=meta.get("normalization", ""), storage_dtype=str(images.dtype),
            has_patient_ids=bool(meta.get("patient_ids", True)),
            source_kind=meta.get("source", {}).get("kind", ""),
        )


__all__ = ["SPLITS", "class_counts", "load_meta", "load_split", "write_prepared", "write_split"]
