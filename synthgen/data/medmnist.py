"""MedMNIST-style ``.npz`` reader (``data=medmnist``).

Expected keys: ``{train,val,test}_images`` ``(N, H, W)`` or ``(N, H, W, 3)`` uint8 and
``{train,val,test}_labels`` ``(N,)`` or ``(N, 1)``. Normalization: ``x / 255``.
MedMNIST has no patient ids: each image gets a stand-in id (``<split>-<index>``) and the cohort says
``has_patient_ids=False``. The official splits are scan-disjoint, so they are kept whole (the prepare stage
carves the privacy holdout out of the official val split; see :mod:`synthgen.data.splits`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from .cohort import Cohort
from .transforms import resize_square

# Class names of known MedMNIST v2 flavours, in label order (from the dataset's INFO table).
MEDMNIST_CLASSES: dict[str, list[str]] = {
    "bloodmnist": ["basophil", "eosinophil", "erythroblast", "immature_granulocytes", "lymphocyte",
                   "monocyte", "neutrophil", "platelet"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "breastmnist": ["malignant", "normal_benign"],
    "dermamnist": ["actinic_keratoses", "basal_cell_carcinoma", "benign_keratosis", "dermatofibroma",
                   "melanoma", "melanocytic_nevi", "vascular_lesions"],
    "octmnist": ["choroidal_neovascularization", "diabetic_macular_edema", "drusen", "normal"],
    "retinamnist": ["grade_0", "grade_1", "grade_2", "grade_3", "grade_4"],
    "pathmnist": ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth_muscle",
                  "normal_colon_mucosa", "cancer_associated_stroma", "colorectal_adenocarcinoma"],
    "organamnist": ["bladder", "femur_left", "femur_right", "heart", "kidney_left", "kidney_right",
                    "liver", "lung_left", "lung_right", "pancreas", "spleen"],
}

_SPLITS = ("train", "val", "test")


def flavour_of(path: str | os.PathLike) -> str | None:
    """``.../pneumoniamnist_imbalanced.npz`` -> ``pneumoniamnist`` (longest known prefix)."""
    stem = Path(path).stem.lower()
    hits = [k for k in MEDMNIST_CLASSES if stem.startswith(k)]
    return max(hits, key=len) if hits else None


class MedMNISTReader:
    """Read a MedMNIST-style ``.npz`` into a :class:`Cohort` keeping its official splits.

    Args:
        path: the ``.npz`` file.
        image_size: output side length; ``None`` keeps the native size.
        classes: class names in label order; ``None`` takes them from the flavour table
            (or ``class_0..``).
        flavour: MedMNIST flavour name; ``None`` guesses it from the file name.
    """

    def __init__(self, path: str, image_size: int | None = 28, classes: Sequence[str] | None = None,
                 flavour: str | None = None):
        if path in (None, "", "???"):
            raise InputError(None, "config data.path: set it to a MedMNIST .npz file")
        self.path = Path(path)
        self.image_size = image_size
        self.classes = list(classes) if classes else None
        self.flavour = flavour or flavour_of(self.path)

    def read(self) -> Cohort:
        p = self.path
        if not p.exists():
            raise InputError(p, "file not found")
        try:
            z = np.load(p, allow_pickle=False)
            files = set(z.files)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise InputError(p, f"not a readable .npz archive (truncated or corrupt): {e}") from None
        need = [f"{s}_{k}" for s in _SPLITS for k in ("images", "labels")]
        missing = [k for k in need if k not in files]
        if missing:
            raise InputError(p, f"missing keys {missing}; expected {{train,val,test}}_{{images,labels}}")
        imgs, labels, pids, sources, splits = [], [], [], [], []
        try:
            for s in _SPLITS:
                x = z[f"{s}_images"]
                y = np.asarray(z[f"{s}_labels"]).reshape(len(x), -1)[:, 0]
                imgs.append(self._to_nchw(x))
                labels.append(y.astype(np.int64))
                ids = [f"{s}-{i:06d}" for i in range(len(x))]
                pids += ids
                sources += [f"{p.name}#{i}" for i in ids]
                splits += [s] * len(x)
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise InputError(p, f"cannot read arrays (truncated or corrupt .npz): {e}") from None
        images = np.concatenate(imgs)
        if not np.isfinite(images).all():
            raise InputError(p, "images contain NaN or Inf")
        y = np.concatenate(labels)
        names = self._class_names(int(y.max(initial=0)) + 1)
        if y.min(initial=0) < 0 or y.max(initial=0) >= len(names):
            raise InputError(p, f"labels outside 0..{len(names) - 1} for classes {names}")
        return Cohort(images=images, labels=y, class_names=names, patient_ids=np.array(pids),
                      sources=np.array(sources), splits=np.array(splits),
                      normalization="uint8 / 255 (MedMNIST intensities as stored)",
                      storage_dtype="uint8", has_patient_ids=False, source_kind="medmnist",
                      extra={"path": str(self.path), "flavour": self.flavour})

    def _to_nchw(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        else:
            raise InputError(self.path, f"images have shape {x.shape}; expected (N, H, W) or (N, H, W, 1|3)")
        if x.dtype == np.uint8:
            xf = x.astype(np.float32) / 255.0
        elif x.dtype == np.uint16:
            xf = x.astype(np.float32) / 65535.0
        else:
            xf = x.astype(np.float32)
            if not np.isfinite(xf).all():
                raise InputError(self.path, "images contain NaN or Inf")
            if xf.min() < 0 or xf.max() > 1:
                raise InputError(self.path, f"float images must lie in [0, 1], got [{xf.min()}, {xf.max()}]")
        if self.image_size and xf.shape[-1] != self.image_size or self.image_size and xf.shape[-2] != self.image_size:
            xf = np.stack([resize_square(im, self.image_size) for im in xf])
        return xf

    def _class_names(self, n: int) -> list[str]:
        if self.classes:
            if len(self.classes) < n:
                raise InputError(self.path, f"labels reach {n - 1} but data.classes names only {len(self.classes)}")
            return self.classes
        if self.flavour in MEDMNIST_CLASSES:
            return list(MEDMNIST_CLASSES[self.flavour])
        return [f"class_{i}" for i in range(n)]
