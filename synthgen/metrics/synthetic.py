"""Read a synthetic cohort (``data/generated`` or ``data/audited``) for evaluation, checked against
the prepared data it must match."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..data.dims import image_shape
from ..errors import InputError


def cohort_path(path: str | os.PathLike) -> Path:
    """A cohort ``.npz`` file, or a folder holding ``cohort.npz``."""
    p = Path(path)
    return p / "cohort.npz" if p.is_dir() else p


def load_cohort(path: str | os.PathLike, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Load and validate a cohort against the prepared ``meta.json``.

    Returns:
        ``images`` ``(N, C, H, W)`` (volumes: ``(N, C, D, H, W)``, :mod:`synthgen.data.dims`) float32 in ``[0, 1]``, ``labels`` ``(N,)`` int64 and the cohort's
        ``cohort.json`` (``{}`` when absent).

    Raises:
        InputError: missing/corrupt file, missing keys, wrong shape/dtype, labels out of range,
            class names that differ from the prepared data.
    """
    p = cohort_path(path)
    if not p.exists():
        raise InputError(p, "synthetic cohort not found (run the generate stage, or set evaluate.cohort)")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in ("images", "labels") if k not in z.files]
            if missing:
                raise InputError(p, f"missing keys {missing}; expected images (N, C, H, W) and labels (N,)")
            images, labels = z["images"], z["labels"]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise InputError(p, f"not a readable .npz archive (truncated or corrupt): {e}") from None
    want = image_shape(meta)
    if images.shape[1:] != want:
        raise InputError(p, f"images have shape {images.shape}; the prepared data is (N, {', '.join(map(str, want))})")
    if labels.shape != (len(images),):
        raise InputError(p, f"labels have shape {labels.shape} for {len(images)} images")
    if len(images) == 0:
        raise InputError(p, "the cohort is empty")
    n_classes = len(meta["class_names"])
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= n_classes:
        raise InputError(p, f"labels must be integers in 0..{n_classes - 1}")
    if images.dtype in (np.uint8, np.uint16):
        if str(images.dtype) != meta["dtype"]:
            raise InputError(p, f"images are {images.dtype}; the prepared data is {meta['dtype']}")
        x = images.astype(np.float32) / np.float32(np.iinfo(images.dtype).max)
    elif np.issubdtype(images.dtype, np.floating):
        x = images.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise InputError(p, "float images must be finite and in [0, 1]")
    else:
        raise InputError(p, f"images have dtype {images.dtype}; expected {meta['dtype']}")
    info: dict[str, Any] = {}
    j = p.with_suffix(".json")
    if j.exists():
        try:
            info = json.loads(j.read_text())
        except json.JSONDecodeError as e:
            raise InputError(j, f"not valid JSON: {e}") from None
        names = info.get("class_names")
        if names is not None and list(names) != list(meta["class_names"]):
            raise InputError(j, f"class_names {names} differ from the prepared data's {meta['class_names']}")
    return x, labels.astype(np.int64), info


__all__ = ["cohort_path", "load_cohort"]
