"""Copy-like edits for the copy-detection benchmark (issue 15): composed geometry, several interpolations and
paddings, intensity, noise, blur, flips -- each family at graded strengths.

    edited, params = edit_copies(train01, index, "rotscale", level=2, seed=0)

Every random quantity is drawn from ``seed`` first and returned per copy (``params``). Images are
``(N, C, H, W)`` float32 in ``[0, 1]``; every output is re-quantized to multiples of 1/255 (an 8-bit save).

Geometry is one affine map about the image centre, resampled by ``scipy.ndimage`` (``nearest`` = order 0,
``bilinear`` = order 1, ``spline`` = cubic B-spline, order 3 with prefilter) or by torch (``bicubic``: Keys
convolution, as image libraries do), with the padding drawn from ``edge``, ``constant`` (0), ``reflect``. The
``issue`` family is the recipe of issue 15's hidden CT case as a user would write it: ``scipy.ndimage.rotate``
(reshape off) then ``scipy.ndimage.zoom``, both cubic spline with edge padding, then a centre crop (or edge
pad) back to the input size -- which also carries the half-pixel offsets that odd size changes produce.

Families and levels (``LEVELS[family]``; level 2 of ``rotscale`` is the issue's "moderate composed" edit):

* ``exact``: re-quantized copy; ``mild``: integer shift ``<= 2`` px (edge), gamma 0.9-1.1, noise 1-2%, blur
  sigma ``<= 0.7`` (the privacy notes' definition); ``issue``: see above (rotation +-5 x scale 0.95-1.05);
* ``rotscale``: rotation ``U(+-r)`` composed with scale ``U(1 +- d)`` and a sub-pixel shift ``U(+-0.5)``;
* ``translate``: sub-pixel translation ``U(+-t)`` px per axis; ``crop``: a crop of fraction ``f`` at a random
  position resized back; (these three with a random interpolation and padding);
* ``intensity``: window/level (low end ``U(0, a)``, high end ``U(1 - a, 1)``) then gamma ``U(1/g, g)`` (log);
* ``noise``: Gaussian noise of sigma ``n``; ``blur``: Gaussian blur of sigma ``b`` px;
* ``hflip`` / ``vflip``: mirrored copies.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "spline")
PADDINGS = ("edge", "constant", "reflect")
_SCIPY_ORDER = {"nearest": 0, "bilinear": 1, "spline": 3}
_SCIPY_MODE = {"edge": "nearest", "constant": "constant", "reflect": "reflect"}
_TORCH_PAD = {"edge": "border", "constant": "zeros", "reflect": "reflection"}

LEVELS: dict[str, list[dict]] = {
    "exact": [{}],
    "mild": [{}],
    "issue": [{"rot": 5.0, "scale": 0.05}],
    "rotscale": [{"rot": 2.5, "scale": 0.025}, {"rot": 5.0, "scale": 0.05}, {"rot": 7.5, "scale": 0.075},
                 {"rot": 10.0, "scale": 0.1}],
    "translate": [{"shift": 1.0}, {"shift": 2.0}, {"shift": 3.0}, {"shift": 4.0}],
    "crop": [{"frac": 0.95}, {"frac": 0.9}, {"frac": 0.85}, {"frac": 0.8}],
    "intensity": [{"window": 0.03, "gamma": 1.05}, {"window": 0.06, "gamma": 1.1}, {"window": 0.1, "gamma": 1.2},
                  {"window": 0.15, "gamma": 1.35}],
    "noise": [{"sigma": 0.01}, {"sigma": 0.02}, {"sigma": 0.04}, {"sigma": 0.06}],
    "blur": [{"sigma": 0.5}, {"sigma": 0.7}, {"sigma": 1.0}, {"sigma": 1.5}],
    "hflip": [{}],
    "vflip": [{}],
}


def requantize(x: np.ndarray) -> np.ndarray:
    """Clip to ``[0, 1]`` and round to multiples of 1/255 (float32)."""
    return (np.rint(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def affine(img: np.ndarray, a: np.ndarray, b: np.ndarray, interp: str, padding: str) -> np.ndarray:
    """Resample ``img`` ``(C, H, W)``: output pixel ``o`` (row, col) reads input ``a @ o + b`` (pixel centres
    at integers). ``interp`` in :data:`INTERPOLATIONS`, ``padding`` in :data:`PADDINGS`."""
    if interp == "bicubic":
        c, h, w = img.shape
        # (row, col) pixel map -> (x, y) normalized map of F.affine_grid (align_corners=False)
        ax = np.array([[a[1, 1], a[1, 0]], [a[0, 1], a[0, 0]]], np.float64)
        bx = np.array([b[1], b[0]], np.float64)
        size = np.array([w, h], np.float64)
        # x_in_n = (2 x_in + 1) / n - 1 with x_in = A x_out + b and x_out = ((x_out_n + 1) n - 1) / 2
        lin = ax * size[None, :] / size[:, None]
        off = (ax @ (size - 1) + 2 * bx + 1) / size - 1
        theta = torch.tensor(np.concatenate([lin, off[:, None]], 1), dtype=torch.float32)[None]
        grid = F.affine_grid(theta, [1, c, h, w], align_corners=False)
        out = F.grid_sample(torch.as_tensor(img, dtype=torch.float32)[None], grid, mode="bicubic",
                            padding_mode=_TORCH_PAD[padding], align_corners=False)[0]
        return out.numpy()
    order, mode = _SCIPY_ORDER[interp], _SCIPY_MODE[padding]
    return np.stack([ndimage.affine_transform(ch.astype(np.float64), a, offset=b, order=order, mode=mode, cval=0.0)
                     for ch in img]).astype(np.float32)


def rotscale_map(h: int, w: int, angle_deg: float, scale: float, dy: float = 0.0,
                 dx: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Pixel map of a rotation by ``angle_deg`` and zoom by ``scale`` about the centre, then a shift."""
    t = math.radians(angle_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) / scale
    ctr = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    return rot, ctr - rot @ (ctr + np.array([dy, dx]))


def issue_edit(img: np.ndarray, angle_deg: float, scale: float) -> np.ndarray:
    """``scipy.ndimage.rotate`` + ``zoom`` (cubic spline, edge padding), centre crop / edge pad to the input
    size: ``(C, H, W)`` -> same shape."""
    c, h, w = img.shape
    out = []
    for ch in img.astype(np.float64):
        r = ndimage.rotate(ch, angle_deg, reshape=False, order=3, mode="nearest")
        z = ndimage.zoom(r, scale, order=3, mode="nearest")
        zh, zw = z.shape
        if zh < h or zw < w:
            ph, pw = max(0, h - zh), max(0, w - zw)
            z = np.pad(z, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="edge")
            zh, zw = z.shape
        oy, ox = (zh - h) // 2, (zw - w) // 2
        out.append(z[oy:oy + h, ox:ox + w])
    return np.stack(out).astype(np.float32)


def gauss_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Per-channel Gaussian blur with edge padding (``sigma`` in px; < 0.05 = none)."""
    if sigma < 0.05:
        return img
    return np.stack([ndimage.gaussian_filter(ch, sigma, mode="nearest") for ch in img]).astype(np.float32)


def _one(x: np.ndarray, family: str, lv: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    c, h, w = x.shape
    p: dict = {}
    if family in ("rotscale", "translate", "crop"):
        p["interp"] = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]
        p["padding"] = PADDINGS[int(rng.integers(len(PADDINGS)))]
    if family == "exact":
        return x, p
    if family == "mild":
        dy, dx = (int(v) for v in rng.integers(-2, 3, size=2))
        p.update(shift=[dy, dx], gamma=float(rng.uniform(0.9, 1.1)), noise=float(rng.uniform(0.01, 0.02)),
                 blur=float(rng.uniform(0.0, 0.7)))
        xp = np.pad(x, ((0, 0), (2, 2), (2, 2)), mode="edge")[:, 2 - dy:2 - dy + h, 2 - dx:2 - dx + w]
        y = gauss_blur(np.clip(xp, 0, 1) ** p["gamma"], p["blur"])
        return y + p["noise"] * rng.standard_normal(y.shape), p
    if family == "issue":
        p.update(angle=float(rng.uniform(-lv["rot"], lv["rot"])), scale=float(rng.uniform(1 - lv["scale"],
                                                                                           1 + lv["scale"])))
        return issue_edit(x, p["angle"], p["scale"]), p
    if family == "rotscale":
        p.update(angle=float(rng.uniform(-lv["rot"], lv["rot"])),
                 scale=float(rng.uniform(1 - lv["scale"], 1 + lv["scale"])),
                 shift=[float(v) for v in rng.uniform(-0.5, 0.5, size=2)])
        a, b = rotscale_map(h, w, p["angle"], p["scale"], *p["shift"])
        return affine(x, a, b, p["interp"], p["padding"]), p
    if family == "translate":
        p["shift"] = [float(v) for v in rng.uniform(-lv["shift"], lv["shift"], size=2)]
        return affine(x, np.eye(2), -np.array(p["shift"]), p["interp"], p["padding"]), p
    if family == "crop":
        ch, cw = lv["frac"] * h, lv["frac"] * w
        oy, ox = float(rng.uniform(0, h - ch)), float(rng.uniform(0, w - cw))
        p.update(crop=[oy, ox, ch, cw])
        a = np.diag([ch / h, cw / w])
        b = np.array([oy + 0.5 * ch / h - 0.5, ox + 0.5 * cw / w - 0.5])   # output centre -> crop centre
        return affine(x, a, b, p["interp"], p["padding"]), p
    if family == "intensity":
        lo, hi = float(rng.uniform(0, lv["window"])), float(rng.uniform(1 - lv["window"], 1))
        g = float(np.exp(rng.uniform(-np.log(lv["gamma"]), np.log(lv["gamma"]))))
        p.update(window=[lo, hi], gamma=g)
        return np.clip((x - lo) / (hi - lo), 0, 1) ** g, p
    if family == "noise":
        return x + lv["sigma"] * rng.standard_normal(x.shape), p
    if family == "blur":
        return gauss_blur(x, lv["sigma"]), p
    if family == "hflip":
        return x[..., ::-1], p
    if family == "vflip":
        return x[..., ::-1, :], p
    raise ValueError(f"unknown edit family {family!r}; known: {sorted(LEVELS)}")


def edit_copies(train01: np.ndarray, index: np.ndarray, family: str, level: int, seed: int
                ) -> tuple[np.ndarray, list[dict]]:
    """Edited copies of ``train01[index]`` (``(N, C, H, W)`` float in ``[0, 1]``) with family ``family`` at
    ``level`` (1-based, ``LEVELS[family]``); returns ``(M, C, H, W)`` float32 re-quantized and the parameters."""
    if family not in LEVELS:
        raise ValueError(f"unknown edit family {family!r}; known: {sorted(LEVELS)}")
    if not 1 <= level <= len(LEVELS[family]):
        raise ValueError(f"{family} has levels 1..{len(LEVELS[family])}, got {level}")
    lv = LEVELS[family][level - 1]
    rng = np.random.default_rng(seed)
    out, params = [], []
    for i in np.asarray(index, np.int64):
        y, p = _one(np.asarray(train01[i], np.float32), family, lv, rng)
        out.append(requantize(y))
        params.append({"train_index": int(i), "family": family, "level": level, **p})
    if not out:
        return np.zeros((0, *train01.shape[1:]), np.float32), []
    return np.stack(out), params
