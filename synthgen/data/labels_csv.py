"""The labels CSV shared by the file-based readers (``data=dicom``, ``data=nifti``, ``data=imagefolder``).

One row per image (or per slice): ``path,label,patient_id`` (+ ``slice`` for NIfTI). ``path`` is relative
to ``data.root``; ``label`` is a class name; ``patient_id`` groups images so that one patient never
straddles two splits. Extra columns are ignored. Every problem raises :class:`InputError` naming the CSV
(and the 1-based row number counted like a spreadsheet: the header is row 1).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from ..errors import InputError

BASE_COLUMNS = ("path", "label", "patient_id")


@dataclass(frozen=True)
class LabelRow:
    """One data row of the labels CSV.

    Attributes:
        row: 1-based row number in the CSV (header = 1), for error messages.
        path: the ``path`` cell, normalized to forward slashes (relative to the data root).
        label: class name as written.
        patient_id: patient identifier as written.
        slice: the ``slice`` cell as an int when the reader asks for it, else None.
    """

    row: int
    path: str
    label: str
    patient_id: str
    slice: int | None = None


@dataclass(frozen=True)
class LabelTable:
    """A parsed labels CSV: the rows, class names in label order and each row's integer label."""

    csv_path: Path
    rows: list[LabelRow]
    class_names: list[str]
    label_index: list[int]

    def file(self, root: Path, row: LabelRow) -> Path:
        """Absolute location of a row's file under ``root``."""
        return root / row.path


def resolve_csv(root: str | os.PathLike, labels: str | os.PathLike) -> Path:
    """``data.labels`` is relative to ``data.root`` unless it is absolute."""
    labels = Path(labels)
    return labels if labels.is_absolute() else Path(root) / labels


def read_labels_csv(csv_path: str | os.PathLike, classes: Sequence[str] | None = None,
                    with_slice: bool = False) -> LabelTable:
    """Parse and validate a labels CSV.

    Args:
        csv_path: the CSV file.
        classes: class names in label order (``data.classes``); None = sorted unique labels.
        with_slice: require an integer ``slice`` column (NIfTI).

    Raises:
        InputError: missing/unreadable file, empty file, missing column, empty cell, bad slice,
            label outside ``classes``.
    """
    p = Path(csv_path)
    if not p.is_file():
        raise InputError(p, "labels CSV not found")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(p, f"cannot read labels CSV: {e}") from None
    try:
        lines = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise InputError(p, f"not a readable CSV: {e}") from None
    while lines and not any(c.strip() for c in lines[-1]):
        lines.pop()  # trailing blank lines
    if not lines:
        raise InputError(p, "empty CSV: expected a header row path,label,patient_id and one row per image")
    header = [h.strip() for h in lines[0]]
    need = BASE_COLUMNS + (("slice",) if with_slice else ())
    missing = [c for c in need if c not in header]
    if missing:
        raise InputError(p, f"no {', '.join(repr(c) for c in missing)} column; header is {header}, "
                            f"expected {','.join(need)}")
    col = {c: header.index(c) for c in need}
    rows: list[LabelRow] = []
    for n, cells in enumerate(lines[1:], start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) < len(header):
            raise InputError(p, f"row {n}: {len(cells)} cells for {len(header)} columns")
        vals = {c: cells[i].strip() for c, i in col.items()}
        empty = [c for c, v in vals.items() if not v]
        if empty:
            raise InputError(p, f"row {n}: empty {', '.join(empty)}")
        sl = None
        if with_slice:
            try:
                sl = int(vals["slice"])
            except ValueError:
                raise InputError(p, f"row {n}: slice {vals['slice']!r} is not an integer") from None
            if sl < 0:
                raise InputError(p, f"row {n}: slice {sl} is negative")
        rows.append(LabelRow(row=n, path=PurePosixPath(vals["path"].replace("\\", "/")).as_posix(),
                             label=vals["label"], patient_id=vals["patient_id"], slice=sl))
    if not rows:
        raise InputError(p, "empty CSV: a header but no data rows")
    if classes:
        names = [str(c) for c in classes]
        for r in rows:
            if r.label not in names:
                raise InputError(p, f"row {r.row}: label {r.label!r} is not in data.classes {names}")
    else:
        names = sorted({r.label for r in rows})
    lookup = {name: i for i, name in enumerate(names)}
    return LabelTable(csv_path=p, rows=rows, class_names=names, label_index=[lookup[r.label] for r in rows])
