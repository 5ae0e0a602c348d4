"""Volume-level near-copy score: Pearson correlation after a 3D shift (and declared flips) search, with SSIM.

The 3D counterpart of :func:`synthgen.privacy.pixel.aligned_scores` for cohorts of volumes ``(N, C, D, H, W)``
(``data.dims=3``), with the same return keys so :func:`synthgen.privacy.scores.query_scores`, calibration, flags
and gates are shared. For each (query, candidate) pair:

1. the candidate's central window ``(D - 2s) x (H - 2s) x (W - 2s)`` is centred and scaled to unit norm (a
   template: Pearson is invariant to the brightness/contrast part of an intensity edit);
2. its dot product with every integer shift ``|dz|, |dy|, |dx| <= s`` of the query's window is one grouped
   ``conv3d`` per batch (all candidates of all queries of the batch at once); dividing by the norm of each
   centred query window (window sums of ``x`` and ``x^2``, float64) gives the normalized cross-correlation at
   every shift, i.e. the Pearson correlation of the overlapping windows;
3. the query is also tried mirrored along each axis in ``flips`` (only where a mirrored copy counts as a copy:
   ``privacy.volume.flips``, none by default);
4. the pair's score is the best Pearson; SSIM (the 2D SSIM of :mod:`.pixel`, averaged over the axial slices of
   the best-aligned windows) re-ranks the ``ssim_top`` best candidates.

No rotation/scale grid: the copies a 3D generator makes are shifted, cropped or intensity-edited volumes, and
the copy encoder's views (:mod:`.embedding`) cover small rotations and scales for the shortlist.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .knn import EPS
from .pixel import ssim


def _window_norms3(x: torch.Tensor, win: tuple[int, int, int]) -> torch.Tensor:
    """``(B, C, D, H, W)`` -> ``(B, n, n, n)``: L2 norm of every window of size ``win`` (all channels), centred
    by its mean over channels and voxels, from window sums of ``x`` and ``x^2`` (float64)."""
    xd = x.double()
    k = win[0] * win[1] * win[2] * x.shape[1]
    s1 = (F.avg_pool3d(xd, win, stride=1) * (k // x.shape[1])).sum(1)
    s2 = (F.avg_pool3d(xd * xd, win, stride=1) * (k // x.shape[1])).sum(1)
    return (s2 - s1 * s1 / k).clamp_min(EPS).sqrt().float()


@torch.no_grad()
def aligned_scores_volume(queries01: np.ndarray, base01: np.ndarray, candidates: np.ndarray, max_shift: int = 2,
                          ssim_top: int = 3, batch: int = 16, flips: Sequence[int] = (),
                          device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Shift-searched Pearson and SSIM of every query volume against its candidate training volumes.

    Args:
        queries01: ``(Nq, C, D, H, W)`` float32 in ``[0, 1]``.
        base01: ``(Nb, C, D, H, W)`` float32 in ``[0, 1]`` (training volumes).
        candidates: ``(Nq, k)`` int64 indices into ``base01`` (``-1`` = no candidate).
        max_shift: integer shift search radius ``s`` in voxels (every axis; clipped so a window remains).
        ssim_top: SSIM is computed for this many best-Pearson candidates; its match is the best SSIM.
        batch: queries per grouped convolution (memory only).
        flips: spatial axes (0 = D, 1 = H, 2 = W) along which the mirrored query is also searched.

    Returns:
        the keys of :func:`synthgen.privacy.pixel.aligned_scores`: ``pearson`` ``(Nq,)`` (``-1`` without
        candidates), ``pearson_index``, ``ssim``, ``ssim_index``, ``top_index`` ``(Nq, min(ssim_top, k))`` and
        ``top_pearson``.
    """
    dev = torch.device(device)
    candidates = np.asarray(candidates, np.int64)
    nq, k = candidates.shape
    top_n = max(1, min(ssim_top, k))
    out = {"pearson": np.full(nq, -1.0, np.float32), "pearson_index": np.full(nq, -1, np.int64),
           "ssim": np.full(nq, -1.0, np.float32), "ssim_index": np.full(nq, -1, np.int64),
           "top_index": np.full((nq, top_n), -1, np.int64), "top_pearson": np.full((nq, top_n), -1.0, np.float32)}
    if nq == 0 or k == 0:
        return out
    c, d, h, w = queries01.shape[1:]
    s = max(0, min(int(max_shift), (min(d, h, w) - 1) // 2))
    win = (d - 2 * s, h - 2 * s, w - 2 * s)
    views = [()] + [(2 + int(a),) for a in flips]                            # flip dims of (B, C, D, H, W)
    for start in range(0, nq, batch):
        rows = np.arange(start, min(nq, start + batch))
        nb = len(rows)
        cand = torch.as_tensor(candidates[rows], device=dev)                 # (B, k)
        valid = cand >= 0
        q = torch.as_tensor(queries01[rows], dtype=torch.float32, device=dev)
        b = torch.as_tensor(base01[cand.clamp_min(0).cpu().numpy()], dtype=torch.float32, device=dev)
        bc = b[..., s:d - s, s:h - s, s:w - s]                               # (B, k, C, *win)
        tpl = bc - bc.mean(dim=(2, 3, 4, 5), keepdim=True)
        tpl = tpl / tpl.flatten(2).norm(dim=2).clamp_min(EPS)[..., None, None, None, None]
        best_r = torch.full((nb, k), -2.0, device=dev)
        best_q = torch.zeros((nb, k, c, *win), device=dev)                   # the best-aligned query windows
        for dims in views:
            qv = q.flip(dims) if dims else q
            dots = F.conv3d(qv.reshape(1, nb * c, d, h, w), tpl.reshape(nb * k, c, *win), groups=nb)
            dots = dots.reshape(nb, k, -1)                                   # (B, k, n^3)
            norms = _window_norms3(qv, win)                                  # (B, n, n, n)
            r = dots / norms.reshape(nb, 1, -1)
            r_best, sh = r.max(dim=2)                                        # (B, k)
            better = r_best > best_r
            best_r = torch.where(better, r_best, best_r)
            n = 2 * s + 1
            dz, dy, dx = sh // (n * n), (sh // n) % n, sh % n
            for i in range(nb):
                for j in np.flatnonzero(better[i].cpu().numpy()):
                    z0, y0, x0 = int(dz[i, j]), int(dy[i, j]), int(dx[i, j])
                    best_q[i, j] = qv[i, :, z0:z0 + win[0], y0:y0 + win[1], x0:x0 + win[2]]
        best_r = best_r.masked_fill(~valid, -2.0)
        r_top, o_top = torch.topk(best_r, top_n, dim=1)                      # (B, top)
        bt = torch.arange(nb, device=dev)[:, None].expand(-1, top_n)
        qa, ba = best_q[bt, o_top], bc[bt, o_top]                            # (B, top, C, *win)
        sl = lambda v: v.permute(0, 1, 3, 2, 4, 5).reshape(-1, c, win[1], win[2])  # noqa: E731 axial slices
        sv = ssim(sl(qa), sl(ba)).reshape(nb, top_n, win[0]).mean(dim=2)
        sv = sv.masked_fill(r_top < -1.5, -1.0)
        s_best, s_arg = sv.max(dim=1)
        ar = torch.arange(nb, device=dev)
        out["pearson"][rows] = r_top[:, 0].clamp(-1.0, 1.0).cpu().numpy()
        out["pearson_index"][rows] = torch.where(r_top[:, 0] > -1.5, cand[ar, o_top[:, 0]], -1).cpu().numpy()
        out["ssim"][rows] = s_best.cpu().numpy()
        out["ssim_index"][rows] = torch.where(s_best > -1.0, cand[ar, o_top[ar, s_arg]], -1).cpu().numpy()
        out["top_index"][rows] = torch.where(r_top > -1.5, cand[bt, o_top], -1).cpu().numpy()
        out["top_pearson"][rows] = r_top.clamp(-1.0, 1.0).cpu().numpy()
    return out
