"""Volume geometry: canonical (D, H, W) arrays from a NIfTI affine, and resampling to a configured grid.

Orientation convention (shared by every 3D reader, the 3D cohorts and the NIfTI export):

* an image is first reoriented with ``nibabel.as_closest_canonical``: voxel axes (i, j, k) then run towards
  the patient's Right, Anterior and Superior (RAS+; no interpolation, only axis flips/permutations);
* the canonical array ``(X, Y, Z)`` is transposed to ``(D, H, W) = (Z, Y, X)``: ``D`` runs inferior ->
  superior (axial slice index), ``H`` posterior -> anterior, ``W`` the patient's left -> right. So
  ``volume[d]`` is an axial slice, and a voxel with a small ``W`` index lies in the patient's left half;
* ``spacing`` is ``[sz, sy, sx]`` in mm, in the same axis order (``D, H, W``).

The inverse (:func:`ras_affine`): a ``(D, H, W)`` array ``v`` is written as NIfTI data ``v.transpose(2, 1, 0)``
with the diagonal affine ``diag(sx, sy, sz)`` (plus an origin), which puts every voxel back in place.

Resampling rule (``data.volume``; :func:`resample_volume`):

* ``spacing: [sz, sy, sx]`` set: resample to that spacing (the volume keeps its physical extent), then
  center-crop or zero-pad (zero = the bottom of the intensity window, e.g. air) to ``shape``. Every prepared
  voxel then has the same physical size, across patients and scanners.
* ``spacing: null``: resize the whole volume to ``shape`` (field of view kept, aspect ratio not); the
  resulting spacing is ``in_spacing * in_shape / shape``, recorded per cohort as the median over volumes.

Interpolation: an axis that shrinks is box-averaged (``torch`` ``area`` mode, i.e. adaptive average pooling:
antialiased, no ringing), an axis that grows is trilinear (``align_corners=False``). MONAI's ``Resize`` /
``Spacing`` call the same ``torch.nn.functional.interpolate`` underneath plus MetaTensor bookkeeping we do not
need, so monai stays an optional (benchmark) dependency.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def canonical_dhw(img) -> tuple[np.ndarray, np.ndarray]:
    """A nibabel spatial image -> ``(volume (D, H, W) float32, spacing [sz, sy, sx] float64 mm)``.

    4D images must have a 4th axis of length 1. See the module docstring for the axis convention.
    """
    import nibabel as nib

    canon = nib.as_closest_canonical(img)
    data = np.asarray(canon.get_fdata(dtype=np.float32))
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"volume has shape {data.shape}; expected 3D (or 4D with one volume)")
    zooms = np.linalg.norm(canon.affine[:3, :3], axis=0)  # voxel size along i, j, k
    return np.ascontiguousarray(data.transpose(2, 1, 0)), zooms[::-1].astype(np.float64)


def ras_affine(spacing: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    """The 4x4 RAS affine of a ``(D, H, W)`` array written as ``v.transpose(2, 1, 0)`` (see module).

    Voxel sizes ``diag(sx, sy, sz)``; the origin puts the volume's center at world (0, 0, 0) mm (synthetic
    volumes have no scanner position).
    """
    sz, sy, sx = (float(s) for s in spacing)
    d, h, w = (int(n) for n in shape)
    aff = np.diag([sx, sy, sz, 1.0])
    aff[:3, 3] = [-(w - 1) * sx / 2, -(h - 1) * sy / 2, -(d - 1) * sz / 2]
    return aff


def _interpolate(vol: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``(C, D, H, W)`` float32 -> ``(C, *size)``: area on shrinking axes, then trilinear on growing ones."""
    import torch
    import torch.nn.functional as F

    size = tuple(int(s) for s in size)
    t = torch.from_numpy(np.ascontiguousarray(vol, dtype=np.float32))[None]
    shrunk = tuple(min(a, b) for a, b in zip(t.shape[2:], size))
    if shrunk != tuple(t.shape[2:]):
        t = F.interpolate(t, size=shrunk, mode="area")
    if shrunk != size:
        t = F.interpolate(t, size=size, mode="trilinear", align_corners=False)
    return t[0].numpy()


def crop_or_pad(vol: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Center-crop or zero-pad ``(C, D, H, W)`` to ``(C, *shape)`` (odd remainders: one more voxel cut or
    padded at the high end of the axis)."""
    out = np.zeros((vol.shape[0], *(int(s) for s in shape)), dtype=vol.dtype)
    src, dst = [slice(None)], [slice(None)]
    for n, m in zip(vol.shape[1:], shape):
        if n >= m:
            a = (n - m) // 2
            src.append(slice(a, a + m))
            dst.append(slice(None))
        else:
            a = (m - n) // 2
            src.append(slice(None))
            dst.append(slice(a, a + n))
    out[tuple(dst)] = vol[tuple(src)]
    return out


def resample_volume(vol: np.ndarray, spacing: Sequence[float], shape: Sequence[int],
                    target_spacing: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Resample one volume by the module's rule.

    Args:
        vol: ``(C, D, H, W)`` float32 in ``[0, 1]``.
        spacing: its ``[sz, sy, sx]`` mm.
        shape: output ``[D, H, W]``.
        target_spacing: output ``[sz, sy, sx]`` mm, or None = resize to ``shape``.

    Returns:
        ``(volume (C, *shape) float32 in [0, 1], spacing [sz, sy, sx] of the output voxels)``.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    in_shape = np.asarray(vol.shape[1:], dtype=np.float64)
    shape = [int(s) for s in shape]
    if target_spacing is None:
        out = _interpolate(vol, shape)
        out_spacing = spacing * in_shape / np.asarray(shape, dtype=np.float64)
    else:
        target = np.asarray(target_spacing, dtype=np.float64)
        size = np.maximum(1, np.rint(in_shape * spacing / target)).astype(int)
        out = crop_or_pad(_interpolate(vol, size), shape)
        out_spacing = target
    return np.clip(out, 0.0, 1.0, out=out), out_spacing
