"""Shared machinery of the readers that take ``data.root`` + a labels CSV (DICOM, NIfTI, image folder).

A subclass only says how to turn one CSV row into images (:meth:`FileCohortReader.load_row`); this class
parses the CSV, checks that every file exists before decoding anything, decodes rows in a thread pool
(order preserved, so results do not depend on the pool), rejects NaN/Inf, resizes with
:func:`synthgen.data.transforms.resize_square` and checks that channel counts (and, without resizing,
sizes) agree.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from .cohort import Cohort
from .labels_csv import LabelRow, LabelTable, read_labels_csv, resolve_csv
from .transforms import resize_square

# One decoded image: (source relative to the root, (C, H, W) float32 in [0, 1]).
Decoded = tuple[str, np.ndarray]


def default_workers() -> int:
    """Decoding threads: numpy, torch and the codecs release the GIL, so threads overlap I/O and math."""
    return max(1, min(8, os.cpu_count() or 1))


class FileCohortReader:
    """Base of the CSV-driven readers.

    Args:
        root: folder the CSV paths are relative to (``data.root``).
        labels: the labels CSV, relative to ``root`` unless absolute (``data.labels``).
        image_size: output side length; None keeps the native size (then all images must match).
        classes: class names in label order; None = sorted unique CSV labels.
        workers: decoding threads; None = :func:`default_workers`.
    """

    #: ``Cohort.source_kind`` of the subclass.
    kind = "files"
    #: whether the CSV needs a ``slice`` column.
    with_slice = False

    def __init__(self, root: str, labels: str = "labels.csv", image_size: int | None = 28,
                 classes: Sequence[str] | None = None, workers: int | None = None):
        if root in (None, "", "???"):
            raise InputError(None, f"config data.root: set it to the folder holding your {self.kind} files")
        self.root = Path(root)
        self.labels = resolve_csv(self.root, labels)
        self.image_size = None if image_size is None else int(image_size)
        self.classes = [str(c) for c in classes] if classes else None
        self.workers = workers or default_workers()

    # --- what a subclass provides -------------------------------------------------------------------
    def load_row(self, table: LabelTable, row: LabelRow) -> list[Decoded]:
        """Decode one CSV row into one or more ``(source, (C, H, W) float32 [0, 1])`` images."""
        raise NotImplementedError

    def normalization(self) -> str:
        """The intensity rule, recorded in ``meta.json``."""
        raise NotImplementedError

    def storage_dtype(self) -> str:
        """How ``data/prepared`` stores the intensities (asked after decoding); 16 bits unless the subclass
        knows its sources had only 8."""
        return "uint16"

    def source_exists(self, path: Path) -> bool:
        """Whether a row's source exists (a file here; a folder for DICOM series)."""
        return path.is_file()

    def resize(self, image: np.ndarray) -> np.ndarray:
        """A decoded ``(C, H, W)`` image -> ``(C, image_size, image_size)`` (unchanged without image_size);
        ValueError for another shape."""
        if image.ndim != 3:
            raise ValueError(f"decoded image has shape {image.shape}, expected (C, H, W)")
        return image if self.image_size is None else resize_square(image, self.image_size)

    def extra(self) -> dict:
        return {"root": str(self.root), "labels": str(self.labels)}

    # --- the shared pipeline -----------------------------------------------------------------------
    def read(self) -> Cohort:
        table = read_labels_csv(self.labels, self.classes, with_slice=self.with_slice)
        for r in table.rows:
            f = table.file(self.root, r)
            if not self.source_exists(f):
                raise InputError(table.csv_path, f"row {r.row}: file {f} not found")
        if self.workers > 1 and len(table.rows) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                results = list(pool.map(lambda r: self._decode(table, r), table.rows))
        else:
            results = [self._decode(table, r) for r in table.rows]
        images, labels, pids, sources = [], [], [], []
        first: tuple[str, tuple[int, ...]] | None = None
        for r, y, decoded in zip(table.rows, table.label_index, results):
            for src, img in decoded:
                if first is None:
                    first = (src, img.shape)
                self._check_consistent(first, src, img.shape)
                images.append(img)
                labels.append(y)
                pids.append(r.patient_id)
                sources.append(src)
        return Cohort(images=np.stack(images).astype(np.float32, copy=False), labels=np.array(labels),
                      class_names=table.class_names, patient_ids=np.array(pids), sources=np.array(sources),
                      normalization=self.normalization(), storage_dtype=self.storage_dtype(),
                      source_kind=self.kind, extra=self.extra())

    def _decode(self, table: LabelTable, row: LabelRow) -> list[Decoded]:
        f = table.file(self.root, row)
        try:
            decoded = self.load_row(table, row)
        except InputError:
            raise
        except Exception as e:  # a codec or parser failure: name the file, keep one line
            msg = " ".join(str(e).split()) or type(e).__name__
            raise InputError(f, f"cannot read ({type(e).__name__}): {msg}") from None
        out = []
        for src, img in decoded:
            if not np.isfinite(img).all():
                raise InputError(f, f"pixels contain NaN or Inf ({src})")
            try:
                img = self.resize(img)
            except ValueError as e:
                raise InputError(f, str(e)) from None
            out.append((src, np.asarray(img, dtype=np.float32)))
        return out

    def _check_consistent(self, first: tuple[str, tuple[int, ...]], src: str, shape: tuple[int, ...]) -> None:
        src0, shape0 = first
        if shape[0] != shape0[0]:
            raise InputError(self.root / src.split("#")[0],
                             f"has {shape[0]} channel(s) but {src0} has {shape0[0]}: mixed gray and color "
                             "images cannot be stacked; convert them to one channel count")
        if shape != shape0:
            raise InputError(self.root / src.split("#")[0],
                             f"is {shape[1]}x{shape[2]} but {src0} is {shape0[1]}x{shape0[2]}: mixed image "
                             "sizes with data.image_size=null; set data.image_size to resize them")
