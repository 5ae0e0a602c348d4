"""Procedural chest-radiograph-like 2D phantoms for the demo cohort.

TorchIO-style: every random quantity is first sampled into a recorded parameter object
(:class:`Anatomy` per patient, :class:`Finding` per patient, :class:`View` per image) from an explicit
``numpy.random.Generator``; :func:`render` then turns parameters into pixels deterministically.

Picture (PA view, displayed as a radiograph: bright = dense, patient's right on the image left):
air outside an elliptic body; two dark lung fields with vessel-like markings; a bright heart overlapping
the lower medial left lung (image right); the spine/mediastinum as a bright central band; curved ribs;
soft tissue below the diaphragm domes. Findings:

* ``normal``: nothing added;
* ``nodule``: one or two round soft-tissue densities (radius 3-5 px at 64 px) inside a lung;
* ``effusion``: fluid filling the base of one or both lungs up to a meniscus rising laterally;
* ``pneumothorax``: a lateral/apical crescent of one lung without markings (darker) behind a thin
  bright pleural line.

Values are "attenuation" in ``[0, 1]`` (0 = air, ~0.5 soft tissue, ~0.8 bone).

Size: geometry is in normalized coordinates, and the two pixel-scale blurs (vessel markings 1.2 px, final
0.6 px at 64 px) scale with ``size / 64``, so a 128 or 256 px rendering shows the same anatomy at a finer
sampling (not an upsampled 64 px picture); 64 px renders exactly as before. Per-pixel quantum noise keeps its
amplitude (a finer detector is not less noisy per pixel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

FINDINGS = ("normal", "nodule", "effusion", "pneumothorax")


@dataclass(frozen=True)
class Anatomy:
    """Per-patient anatomy in normalized coordinates (x right on the image, y down, both in [-1, 1])."""

    body_cx: float
    body_w: float
    lung_sep: float
    lung_w: float
    lung_h: float
    lung_cy: float
    left_lung_scale: float  # the patient's left lung (image right) is smaller: the heart sits there
    heart_cx: float
    heart_cy: float
    heart_w: float
    heart_h: float
    rib_spacing: float
    rib_curve: float
    rib_width: float
    tissue: float
    markings_seed: int


@dataclass(frozen=True)
class Finding:
    """Per-patient finding parameters (the lesion persists across the patient's images)."""

    kind: str
    side: int = 1  # -1 = image-left lung (patient right), +1 = image-right lung (patient left)
    bilateral: bool = False
    x: float = 0.0  # nodule position inside the lung, as a fraction of the lung's semi-axes
    y: float = 0.0
    radius: float = 0.0  # nodule radius (normalized units)
    second: bool = False
    level: float = 0.0  # effusion fluid level (fraction of lung height from the bottom) / ptx depth


@dataclass(frozen=True)
class View:
    """Per-image acquisition: positioning, exposure, noise."""

    dx: float
    dy: float
    scale: float
    gamma: float
    noise: float
    noise_seed: int


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    return Anatomy(
        body_cx=rng.normal(0, 0.03), body_w=rng.uniform(0.84, 0.96), lung_sep=rng.uniform(0.34, 0.41),
        lung_w=rng.uniform(0.25, 0.31), lung_h=rng.uniform(0.55, 0.66), lung_cy=rng.uniform(-0.12, 0.0),
        left_lung_scale=rng.uniform(0.85, 0.95), heart_cx=rng.uniform(0.08, 0.18),
        heart_cy=rng.uniform(0.25, 0.38), heart_w=rng.uniform(0.22, 0.32), heart_h=rng.uniform(0.18, 0.26),
        rib_spacing=rng.uniform(0.14, 0.18), rib_curve=rng.uniform(0.5, 0.9), rib_width=rng.uniform(0.025, 0.04),
        tissue=rng.uniform(0.45, 0.55), markings_seed=int(rng.integers(2**31)),
    )


def sample_finding(kind: str, rng: np.random.Generator) -> Finding:
    if kind not in FINDINGS:
        raise ValueError(f"unknown finding {kind!r}; known: {FINDINGS}")
    side = int(rng.choice([-1, 1]))
    if kind == "nodule":
        return Finding(kind, side=side, x=rng.uniform(-0.5, 0.5), y=rng.uniform(-0.6, 0.4),
                       radius=rng.uniform(0.09, 0.15), second=bool(rng.random() < 0.25))
    if kind == "effusion":
        return Finding(kind, side=side, bilateral=bool(rng.random() < 0.3), level=rng.uniform(0.25, 0.5))
    if kind == "pneumothorax":
        return Finding(kind, side=side, level=rng.uniform(0.35, 0.55))
    return Finding(kind)


def sample_view(rng: np.random.Generator) -> View:
    return View(dx=rng.normal(0, 0.04), dy=rng.normal(0, 0.04), scale=rng.uniform(0.94, 1.06),
                gamma=rng.uniform(0.9, 1.1), noise=rng.uniform(0.008, 0.02), noise_seed=int(rng.integers(2**31)))


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    """Normalized radius: < 1 inside the ellipse."""
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2


def render(anatomy: Anatomy, finding: Finding, view: View, size: int = 64) -> np.ndarray:
    """Parameters -> ``(size, size)`` float64 attenuation in ``[0, 1]`` (deterministic).

    ``size``: side in pixels (the demo renders at ``max(64, data.image_size)``); blur widths scale with
    ``size / 64``."""
    a = anatomy
    px = size / 64.0  # pixel-scale blurs are specified at 64 px
    t = (np.arange(size) + 0.5) / size * 2 - 1
    y, x = np.meshgrid(t, t, indexing="ij")
    x = (x - view.dx) / view.scale
    y = (y - view.dy) / view.scale
    img = np.zeros((size, size))
    body = _ellipse(x, y, a.body_cx, 0.25, a.body_w, 1.15) < 1
    img[body] = a.tissue

    # Lungs: image-left lung is the patient's right (larger); image-right sits beside the heart.
    lungs, lung_r = np.zeros_like(body), {}
    for side in (-1, 1):
        s = a.left_lung_scale if side == 1 else 1.0
        cx = a.body_cx + side * a.lung_sep
        r = _ellipse(x, y, cx, a.lung_cy, a.lung_w * s, a.lung_h)
        lung_r[side] = (r, cx, a.lung_w * s)
        lungs |= r < 1
    markings = gaussian_filter(np.random.default_rng(a.markings_seed).normal(size=(size, size)), 1.2 * px)
    markings = markings / (np.abs(markings).max() + 1e-9)
    img[lungs] = 0.16 + 0.05 * markings[lungs]

    # Mediastinum / spine and heart.
    spine = body & (np.abs(x - a.body_cx) < 0.09)
    img[spine & ~lungs] = np.maximum(img[spine & ~lungs], 0.62)
    heart = _ellipse(x, y, a.body_cx + a.heart_cx, a.heart_cy, a.heart_w, a.heart_h) < 1
    img[heart] = np.maximum(img[heart] * 0.4 + 0.38, 0.58)

    # Ribs: arcs bending down laterally, added on top of whatever lies below.
    for k in range(-4, 6):
        y0 = a.lung_cy - a.lung_h + k * a.rib_spacing
        curve = y0 + a.rib_curve * (x - a.body_cx) ** 2 * 0.6
        rib = body & (np.abs(y - curve) < a.rib_width) & (np.abs(x - a.body_cx) > 0.08)
        img[rib] += 0.09

    # Findings.
    f = finding
    if f.kind == "nodule":
        r, cx, w = lung_r[f.side]
        centers = [(cx + f.x * w, a.lung_cy + f.y * a.lung_h)]
        if f.second:
            centers.append((cx - f.x * w * 0.5, a.lung_cy + (f.y + 0.5) * a.lung_h * 0.5))
        for nx, ny in centers:
            d2 = ((x - nx) ** 2 + (y - ny) ** 2) / f.radius ** 2
            img += 0.35 * np.exp(-d2 * 1.5) * (r < 1.05)
    elif f.kind == "effusion":
        for side in ((-1, 1) if f.bilateral else (f.side,)):
            r, cx, w = lung_r[side]
            bottom = a.lung_cy + a.lung_h
            # Meniscus: the fluid line rises towards the lateral chest wall.
            lateral = np.clip(side * (x - cx) / w, -1, 1)
            line = bottom - f.level * a.lung_h * 2 * (0.55 + 0.45 * lateral)
            fluid = (r < 1) & (y > line)
            img[fluid] = np.maximum(img[fluid], a.tissue * 0.95)
    elif f.kind == "pneumothorax":
        r, cx, w = lung_r[f.side]
        # Collapsed lung: a smaller ellipse pulled medially; the gap is air without markings.
        inner = _ellipse(x, y, cx - f.side * w * f.level * 0.5, a.lung_cy + a.lung_h * f.level * 0.3,
                         w * (1 - f.level), a.lung_h * (1 - f.level * 0.5))
        gap = (r < 1) & (inner >= 1)
        img[gap] = 0.04
        pleura = (r < 1) & (np.abs(inner - 1) < 0.12)
        img[pleura] = np.maximum(img[pleura], 0.32)

    img = gaussian_filter(img, 0.6 * px)
    img = np.clip(img, 0, 1) ** view.gamma
    img += np.random.default_rng(view.noise_seed).normal(0, view.noise, size=img.shape)
    return np.clip(img, 0, 1)
