"""Continuous alignment refinement of shortlisted (query, training image) pairs (issue 15).

The grid search of :mod:`synthgen.privacy.pixel` tries rotations *or* scales, each with integer shifts: a copy
rotated by 4 deg **and** scaled by 0.96, resampled with a sub-pixel offset, sits between grid points, and on
28 px grayscale anatomy half a pixel of misalignment costs more Pearson than separates a copy from another
patient's look-alike image. So the few best candidates of each query are aligned continuously: the query is
warped by a similarity transform ``(angle, scale, ty, tx)`` about the image centre, and the Pearson correlation
with the candidate -- on a centred disc (radius ``H/2 - margin``), so corners filled by any padding mode
(edge, zeros, reflection) and border artefacts never count -- is maximised by Adam from a few starting angles
(an ECC-like objective; Evangelidis & Psarakis 2008 maximise the same normalised correlation).

Parameters are scaled so one unit moves a pixel ~10 px from the centre by ~1 px (angle: 0.1 rad, log-scale:
0.1, shifts: 1 px); the search is bounded (``|angle| <= max_angle_deg``, ``|log scale| <= max_log_scale``,
``|shift| <= max_shift_px``) so a look-alike cannot be bent arbitrarily far onto a candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .knn import EPS


@dataclass(frozen=True)
class RefineSettings:
    """``privacy.pixel.refine`` in conf."""

    top: int = 0                       # candidates refined per query (0 = off); the best grid-Pearson ones
    steps: int = 30                    # Adam steps
    lr: float = 0.1                    # in parameter units (module doc)
    start_angles: tuple[float, ...] = (0.0,)   # degrees; one optimisation per start, best kept
    max_angle_deg: float = 12.0
    max_log_scale: float = 0.12
    max_shift_px: float = 3.0
    margin: int = 2                    # disc radius = min(H, W) / 2 - margin
    batch: int = 512                   # pairs per step (memory only)


def disc_mask(h: int, w: int, margin: int) -> torch.Tensor:
    """``(H, W)`` bool: pixels within ``min(H, W) / 2 - margin`` of the centre."""
    yy, xx = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    return (yy**2 + xx**2).sqrt() <= min(h, w) / 2 - margin


def _theta(p: torch.Tensor, h: int, w: int, cfg: RefineSettings) -> torch.Tensor:
    """``(P, 4)`` scaled parameters -> ``(P, 2, 3)`` ``affine_grid`` matrices (bounded by ``tanh``)."""
    ang = math.radians(cfg.max_angle_deg) * torch.tanh(p[:, 0] * 0.1 / math.radians(cfg.max_angle_deg))
    ls = cfg.max_log_scale * torch.tanh(p[:, 1] * 0.1 / cfg.max_log_scale)
    ty = cfg.max_shift_px * torch.tanh(p[:, 2] / cfg.max_shift_px) * 2 / h
    tx = cfg.max_shift_px * torch.tanh(p[:, 3] / cfg.max_shift_px) * 2 / w
    c, s = torch.cos(ang) * torch.exp(-ls), torch.sin(ang) * torch.exp(-ls)
    return torch.stack([torch.stack([c, -s, tx], 1), torch.stack([s, c, ty], 1)], 1)


def _start(angle_deg: float, cfg: RefineSettings) -> float:
    """Scaled angle parameter whose bounded value is ``angle_deg``."""
    m = math.radians(cfg.max_angle_deg)
    return math.atanh(max(-0.999, min(0.999, math.radians(angle_deg) / m))) * m / 0.1


def _masked_pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson of ``(P, D)`` rows (all channels' masked pixels)."""
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(EPS)


def refine_pairs(queries01: np.ndarray, base01: np.ndarray, pairs: np.ndarray,
                 cfg: RefineSettings) -> np.ndarray:
    """Best continuously aligned disc Pearson of each (query, candidate) pair.

    Args:
        queries01: ``(Nq, C, H, W)`` float in ``[0, 1]``.
        base01: ``(Nb, C, H, W)`` float in ``[0, 1]``.
        pairs: ``(Nq, m)`` int64 candidate indices into ``base01`` (``-1`` = none).
        cfg: search settings.

    Returns:
        ``(Nq, m)`` float32 Pearson in ``[-1, 1]`` at the best alignment found (``-1`` where no candidate).
    """
    pairs = np.asarray(pairs, np.int64)
    nq, m = pairs.shape
    out = np.full((nq, m), -1.0, np.float32)
    qi, ci = np.nonzero(pairs >= 0)
    if not len(qi):
        return out
    c, h, w = queries01.shape[1:]
    mask = disc_mask(h, w, cfg.margin).reshape(-1)
    starts = [_start(a, cfg) for a in cfg.start_angles]
    ns = len(starts)
    per = max(1, cfg.batch // ns)
    with torch.enable_grad():
        for a in range(0, len(qi), per):
            q_rows, c_cols = qi[a:a + per], ci[a:a + per]
            n = len(q_rows)
            q = torch.as_tensor(queries01[q_rows], dtype=torch.float32).repeat_interleave(ns, 0)
            b = torch.as_tensor(base01[pairs[q_rows, c_cols]], dtype=torch.float32)
            bv = b.reshape(n, c, h * w)[:, :, mask].reshape(n, -1).repeat_interleave(ns, 0).detach()
            p = torch.zeros(n * ns, 4)
            p[:, 0] = torch.tensor(starts).repeat(n)
            p.requires_grad_(True)
            opt = torch.optim.Adam([p], lr=cfg.lr)

            def score() -> torch.Tensor:
                grid = F.affine_grid(_theta(p, h, w, cfg), [n * ns, c, h, w], align_corners=False)
                wq = F.grid_sample(q, grid, mode="bilinear", padding_mode="border", align_corners=False)
                return _masked_pearson(wq.reshape(n * ns, c, h * w)[:, :, mask].reshape(n * ns, -1), bv)

            best = torch.full((n * ns,), -1.0)
            for _ in range(cfg.steps):
                r = score()
                best = torch.maximum(best, r.detach())
                opt.zero_grad()
                (-r.sum()).backward()
                opt.step()
            with torch.no_grad():
                best = torch.maximum(best, score())
            out[q_rows, c_cols] = best.reshape(n, ns).max(1).values.clamp(-1, 1).numpy()
    return out
