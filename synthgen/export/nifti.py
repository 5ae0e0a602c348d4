"""Synthetic samples as NIfTI-1 files (``nibabel``), one ``nifti/<key>.nii.gz`` per sample.

Layout convention (documented in the dataset card): a ``(C, H, W)`` sample is stored as voxel array
``(W, H, 1)`` for C=1, or ``(W, H, 1, 1, C)`` with intent ``vector`` for C>1; voxel ``(i, j)`` is column
``i``, row ``j`` (row 0 = top of the image), so ``read_pixels`` = ``data[:, :, 0].T``. Affine: identity
(1 mm isotropic, no patient position; these are not acquisitions). The stored dtype (uint8|uint16) is kept,
``scl_slope``/``scl_inter`` are unset, so intensities are exact. Header fields that could carry
text (``descrip``, ``aux_file``, ``intent_name``) hold only fixed synthgen text. gzip headers carry no
timestamp or file name (``mtime=0``), so bytes are deterministic.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import nibabel as nib
import numpy as np


def sample_image(image: np.ndarray) -> nib.Nifti1Image:
    """NIfTI image of one ``(C, H, W)`` uint8|uint16 sample (see module docstring for the layout)."""
    c, h, w = image.shape
    data = image.transpose(2, 1, 0)  # (W, H, C)
    data = data[:, :, :1] if c == 1 else data[:, :, None, None, :]
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine=np.eye(4))
    hdr = img.header
    hdr.set_data_dtype(image.dtype)
    hdr.set_xyzt_units("mm")
    hdr["descrip"] = b"synthgen synthetic image; not for diagnosis"
    if c > 1:
        hdr.set_intent("vector", (), name="channels")
    img.set_sform(np.eye(4), code="aligned")
    img.set_qform(np.eye(4), code="aligned")
    return img


def write_nifti(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write one sample as ``.nii.gz`` with a timestamp-free gzip header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = sample_image(image).to_bytes()
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(raw)
    path.write_bytes(buf.getvalue())


def read_pixels(path: str | os.PathLike) -> np.ndarray:
    """Read an exported file back to ``(C, H, W)`` in its stored dtype (inverse of :func:`sample_image`)."""
    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    if data.ndim == 3:
        return data[:, :, 0].T[None]
    return data[:, :, 0, 0, :].transpose(2, 1, 0)
