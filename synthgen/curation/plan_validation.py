"""Which real images the boost plan validates on: the prepared ``val`` split, or a file the user names.

The plan decides what ships by comparing classifiers on real validation images (:mod:`synthgen.curation.plan`).
By default those are the prepared ``val`` split, drawn from the same source as the training split. Where the
deployment data differ from it (another site or scanner, a later period), a team can hold out labelled images
of the deployment kind and point ``curate.plan.validation`` at them: an ``.npz`` in the prepared-split format,
e.g. ``train.npz``/``val.npz`` of a second source prepared with the same ``data`` settings into another folder.

The file must never be the test split, nor share an image with it or with the training split. The check reads
the test split's images only to refuse such a file, never to choose a setting (docs/boost.md, session 8).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.prepared import load_split
from ..data.transforms import dequantize
from ..errors import ConfigError, InputError
from ..metrics.utility import LabeledImages

KEY = "curate.plan.validation"


@dataclass(frozen=True)
class PlanValidation:
    """The plan's validation images ``(N, C, H, W)`` float32 in ``[0, 1]`` with labels ``(N,)`` int64, and
    where they come from (``"prepared val split"`` or the file's path, for ``metrics/boost.json`` and the card)."""

    images: LabeledImages
    source: str
    counts: dict[str, int]

    def describe(self) -> dict[str, object]:
        return {"source": self.source, "n": int(len(self.images.labels)), "per_class": dict(self.counts)}


def image_hashes(images: np.ndarray) -> list[bytes]:
    """One 16-byte BLAKE2b digest per image of ``images`` ``(N, ...)``: equal digests = byte-identical images."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in flat]


def _labeled(images01: np.ndarray, labels: np.ndarray) -> LabeledImages:
    return LabeledImages(torch.from_numpy(np.ascontiguousarray(images01, dtype=np.float32)),
                         np.asarray(labels, dtype=np.int64))


def _counts(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, int]:
    return {n: int((labels == i).sum()) for i, n in enumerate(class_names)}


def load_plan_validation(prepared: str | os.PathLike, path: str | os.PathLike | None,
                         class_names: Sequence[str], boosted: Sequence[str],
                         train_images: np.ndarray | None = None) -> PlanValidation:
    """The boost plan's validation images.

    Args:
        prepared: the prepared folder (``train.npz``, ``val.npz``, ``test.npz``, ``meta.json``).
        path: ``curate.plan.validation``; ``None`` = ``<prepared>/val.npz``.
        class_names: the prepared data's classes (label ``i`` is ``class_names[i]``).
        boosted: the classes the plan boosts; each needs at least one validation image.
        train_images: the prepared training split's stored images ``(N, C, H, W)`` where the caller has them
            (read from ``prepared`` otherwise; only a named file needs them).

    Raises:
        ConfigError: the file is missing, is the test split, shares images with the test or training split,
            or lacks images of a boosted class.
        InputError: the file is not an ``.npz`` with ``images`` ``(N, C, H, W)`` of the training split's
            shape and storage dtype and integer ``labels`` ``(N,)`` in ``[0, len(class_names))``.
    """
    prepared = Path(prepared)
    if path is None:
        val = load_split(prepared, "val", as_float=True)
        out = PlanValidation(_labeled(val.images, val.labels), "prepared val split",
                             _counts(np.asarray(val.labels), class_names))
    else:
        out = _load_file(prepared, Path(path), class_names, train_images)
    missing = [c for c in boosted if out.counts.get(c, 0) == 0]
    if missing:
        raise ConfigError(KEY if path is not None else "curate.classes",
                          f"{out.source} has no images of the boosted class(es) {missing}: the plan cannot "
                          "measure a gain without them")
    return out


def _load_file(prepared: Path, path: Path, class_names: Sequence[str],
               train_images: np.ndarray | None) -> PlanValidation:
    if not path.is_file():
        raise ConfigError(KEY, f"{path}: no such file")
    test = prepared / "test.npz"
    if test.exists() and path.resolve() == test.resolve():
        raise ConfigError(KEY, f"{path} is the test split; the plan must never choose on it")
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise InputError(path, f"not an npz with 'images' and 'labels' ({type(e).__name__}: {e})") from None
    train = train_images if train_images is not None else load_split(prepared, "train", as_float=False).images
    want = train.shape[1:]
    if images.ndim != 4 or images.shape[1:] != want or images.dtype != train.dtype:
        raise InputError(path, f"images are {images.dtype} {tuple(images.shape)}; the prepared training split is "
                               f"{train.dtype} (N, {', '.join(map(str, want))}): prepare it with the same "
                               "data settings")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) or (
            len(labels) and (labels.min() < 0 or labels.max() >= len(class_names))):
        raise InputError(path, f"labels must be {len(images)} integers in [0, {len(class_names)}) "
                               f"(classes {list(class_names)})")
    mine = set(image_hashes(images))
    for split in ("test", "train"):
        other = train if split == "train" else load_split(prepared, "test", as_float=False).images
        shared = len(mine.intersection(image_hashes(other)))
        if shared:
            raise ConfigError(KEY, f"{path} shares {shared} image(s) with the prepared {split} split; the plan "
                                   "needs images it was neither trained nor tested on")
    return PlanValidation(_labeled(dequantize(images), labels), str(path), _counts(labels, class_names))


__all__ = ["KEY", "PlanValidation", "image_hashes", "load_plan_validation"]
