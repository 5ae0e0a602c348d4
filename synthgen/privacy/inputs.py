"""Read the audit's image sets: ``.npz`` files or folders of WebDataset shards, into one in-memory form.

Accepted:

* ``.npz`` with ``images`` ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` and ``labels`` ``(N,)`` or
  ``(N, 1)`` (optional ``patient_ids`` ``(N,)``); our ``data/prepared`` and ``data/generated`` files are of
  this kind;
* MedMNIST-style ``.npz`` with ``{split}_images`` / ``{split}_labels``: the split is chosen with a
  ``file.npz#split`` suffix, else the role's default (``train`` for T, ``holdout`` then ``test`` for H,
  ``val`` for the reference R), else
  the only split present;
* a folder of WebDataset ``.tar`` shards whose samples hold ``.npy`` (an image, ``(C, H, W)`` or
  ``(H, W[, C])``) and ``.cls`` (the label), read with plain ``webdataset``.

Pixels: ``uint8 / 255``, ``uint16 / 65535``, float must already lie in ``[0, 1]``.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError

_ROLE_SPLITS = {"train": ("train",), "holdout": ("holdout", "test"), "reference": ("val",), "synthetic": ()}


@dataclass
class ImageSet:
    """Images of one role.

    Attributes:
        images: ``(N, C, H, W)`` float32 in ``[0, 1]`` (volumes: ``(N, C, D, H, W)``).
        labels: ``(N,)`` int64.
        patient_ids: ``(N,)`` unicode (each image its own patient when the source has none).
        dtype: storage dtype of the source (``uint8``/``uint16``; ``float32`` sources report ``float32``).
        source: the path it came from.
    """

    images: np.ndarray
    labels: np.ndarray
    patient_ids: np.ndarray
    dtype: str
    source: str

    def __len__(self) -> int:
        return len(self.images)


def to_nchw(x: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` (C in 1, 3) -> ``(N, C, H, W)``; volumes
    ``(N, C, D, H, W)`` (C in 1, 3; the shared volume contract, ``data.dims=3``) pass unchanged."""
    if x.ndim == 5 and x.shape[1] in (1, 3):
        return x
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
            return x
        if x.shape[3] in (1, 3):
            return x.transpose(0, 3, 1, 2)
        if x.shape[1] in (1, 3):
            return x
    raise InputError(path, f"images have shape {x.shape}; expected (N, H, W), (N, H, W, C), (N, C, H, W) "
                           "or volumes (N, C, D, H, W)")


def to_float01(x: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Integer or float pixels -> float32 ``[0, 1]`` (integers divided by their dtype's maximum)."""
    if x.dtype == np.uint8 or x.dtype == np.uint16:
        return x.astype(np.float32) / np.float32(np.iinfo(x.dtype).max)
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(path, f"images have dtype {x.dtype}; expected uint8, uint16 or float in [0, 1]")
    xf = x.astype(np.float32)
    if not np.isfinite(xf).all():
        raise InputError(path, "images contain NaN or Inf")
    if len(xf) and (xf.min() < 0 or xf.max() > 1):
        raise InputError(path, f"float images must lie in [0, 1], got [{xf.min():.3g}, {xf.max():.3g}]")
    return xf


def _from_arrays(images: np.ndarray, labels: np.ndarray, pids: np.ndarray | None, path: str) -> ImageSet:
    images = to_nchw(np.asarray(images), path)
    labels = np.asarray(labels).reshape(len(labels), -1)
    if labels.shape[1] != 1 or len(labels) != len(images):
        raise InputError(path, f"labels shape {labels.shape} does not match {len(images)} images")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(path, f"labels have dtype {labels.dtype}; expected integers")
    if len(images) == 0:
        raise InputError(path, "no images")
    if pids is None:
        pids = np.array([f"{path}#{i}" for i in range(len(images))])   # full path: unique across files
    elif len(pids) != len(images):
        raise InputError(path, f"patient_ids has {len(pids)} entries for {len(images)} images")
    dtype = str(images.dtype) if images.dtype in (np.uint8, np.uint16) else "float32"
    return ImageSet(to_float01(images, path), labels[:, 0].astype(np.int64), np.asarray(pids, dtype=str),
                    dtype, str(path))


def _read_npz(path: Path, split: str | None, role: str) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if split is None and "images" in files:
                if "labels" not in files:
                    raise InputError(path, "has 'images' but no 'labels'")
                return _from_arrays(z["images"], z["labels"], z["patient_ids"] if "patient_ids" in files else None,
                                    str(path))
            splits = sorted(f[: -len("_images")] for f in files if f.endswith("_images"))
            if split is None:
                prefer = [s for s in _ROLE_SPLITS.get(role, ()) if s in splits]
                if prefer:
                    split = prefer[0]
                elif len(splits) == 1:
                    split = splits[0]
                elif not splits:
                    raise InputError(path, f"no 'images' or '{{split}}_images' key (keys: {sorted(files)})")
                else:
                    raise InputError(path, f"several splits {splits}; pick one with {path}#<split>")
            if f"{split}_images" not in files or f"{split}_labels" not in files:
                raise InputError(path, f"missing keys {split}_images/{split}_labels")
            return _from_arrays(z[f"{split}_images"], z[f"{split}_labels"], None, f"{path}#{split}")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise InputError(path, f"not a readable .npz archive (truncated or corrupt): {e}") from None


def _read_shards(folder: Path) -> ImageSet:
    import webdataset as wds

    shards = sorted(str(p) for p in folder.rglob("*.tar"))
    if not shards:
        raise InputError(folder, "folder holds no .tar WebDataset shards")
    images, labels = [], []
    try:
        for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
            npy = next((v for k, v in sample.items() if k.endswith("npy")), None)
            cls = next((v for k, v in sample.items() if k.endswith("cls")), None)
            if npy is None or cls is None:
                raise InputError(folder, f"sample {sample.get('__key__')} lacks .npy or .cls")
            x = np.load(io.BytesIO(npy), allow_pickle=False)
            if x.ndim == 3 and x.shape[-1] in (1, 3) and x.shape[0] not in (1, 3):
                x = x.transpose(2, 0, 1)
            elif x.ndim == 2:
                x = x[None]
            images.append(x)
            labels.append(int(bytes(cls).decode().strip()))
    except InputError:
        raise
    except Exception as e:  # tarfile/decoder errors: a bad shard
        raise InputError(folder, f"cannot read WebDataset shards: {e}") from None
    if not images or len({x.shape for x in images}) != 1:
        raise InputError(folder, "shards hold no images or images of different shapes")
    return _from_arrays(np.stack(images), np.asarray(labels), None, str(folder))


def read_image_set(spec: str | os.PathLike, role: str = "synthetic") -> ImageSet:
    """Read ``spec`` (``x.npz``, ``x.npz#split`` or a shard folder) for ``role`` (train/holdout/synthetic)."""
    spec = str(spec)
    split = None
    if "#" in spec and spec.rsplit("#", 1)[0].endswith(".npz"):
        spec, split = spec.rsplit("#", 1)
    path = Path(spec)
    if not path.exists():
        raise InputError(path, "not found")
    if path.is_dir():
        return _read_shards(path)
    return _read_npz(path, split, role)


def split_holdout(holdout: ImageSet, seed: int) -> tuple[ImageSet, ImageSet]:
    """Seeded halves of a holdout by patient: ``(reference, holdout)`` for an audit given no reference set.

    Patients (``patient_ids``; each image its own patient when the source has none) are permuted with
    ``seed`` and the first half of them form the reference. Valid only when the holdout holds no
    near-duplicates across patients-as-listed (e.g. adjacent slices of one scan stored without patient ids):
    such pairs would sit on both sides and pull the reference share towards the holdout.
    """
    pids = np.asarray(holdout.patient_ids)
    uniq = np.unique(pids)
    if len(uniq) < 2:
        raise InputError(holdout.source, "cannot split the holdout into a reference and a holdout half: "
                                         "it holds fewer than two patients (pass --reference)")
    rng = np.random.default_rng(seed)
    ref_pids = rng.permutation(uniq)[: len(uniq) // 2]
    in_ref = np.isin(pids, ref_pids)

    def part(mask: np.ndarray, tag: str) -> ImageSet:
        return ImageSet(holdout.images[mask], holdout.labels[mask], pids[mask], holdout.dtype,
                        f"{holdout.source} ({tag} of its patients, seed {seed})")

    return part(in_ref, "reference half"), part(~in_ref, "holdout half")


def check_labels(s: ImageSet, train: ImageSet, role: str) -> None:
    """``s``'s labels must all be training classes (a label the model was never trained on is bad input)."""
    known = np.unique(train.labels)
    bad = np.setdiff1d(np.unique(s.labels), known)
    if len(bad):
        shown = ", ".join(str(int(b)) for b in bad[:10]) + (", ..." if len(bad) > 10 else "")
        raise InputError(s.source, f"{role} labels [{shown}] are not training classes "
                                   f"(train has {[int(k) for k in known[:20]]}{' ...' if len(known) > 20 else ''})")


def check_disjoint_patients(a: ImageSet, b: ImageSet, what: str) -> None:
    """``a`` and ``b`` must share no patient id (e.g. the reference and the holdout)."""
    common = np.intersect1d(np.asarray(a.patient_ids), np.asarray(b.patient_ids))
    if len(common):
        raise InputError(a.source, f"shares {len(common)} patient ids with the {what} {b.source} "
                                   f"(e.g. {str(common[0])!r}); they must hold different patients")


def check_compatible(sets: Sequence[ImageSet]) -> None:
    """All sets must share channels and image (or volume) size (the audit compares pixels)."""
    ref = sets[0]
    for s in sets[1:]:
        if s.images.shape[1:] != ref.images.shape[1:]:
            raise InputError(s.source, f"images are {s.images.shape[1:]} but {ref.source} has "
                                       f"{ref.images.shape[1:]} (C, H, W)")
