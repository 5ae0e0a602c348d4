"""Per-sample copy scores of a query set (synthetic or holdout) against the training set.

One function computes every score the same way for both query sets, so calibration on holdout->train
statistics is exactly comparable with what is measured on the synthetic cohort. Neighbour lists come from a
shared :class:`~synthgen.privacy.knn.NeighbourCache` (computed once per representation, reused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .knn import NeighbourCache
from .pixel import aligned_scores
from .ratio import distance_ratio
from .refine import RefineSettings, refine_pairs
from .volume import aligned_scores_volume


@dataclass
class ScoreSettings:
    """Search settings (from ``privacy.pixel`` / ``privacy.ratio``)."""

    candidates: int = 8
    max_shift: int = 2
    ssim_top: int = 3
    batch: int = 64
    ratio_k: int = 16
    device: str = "cpu"
    refine: RefineSettings = field(default_factory=RefineSettings)
    # continuous refinement (``refine.top > 0``) only for queries whose grid Pearson reaches ``refine_floor``;
    # ``None``: the ``refine_quantile`` of this call's grid Pearson values (the audit sets it from the holdout)
    refine_quantile: float = 0.5
    refine_floor: float | None = None
    # volumes (N, C, D, H, W): shift radius in voxels and the axes along which mirrored copies count
    volume_max_shift: int = 2
    volume_flips: tuple[int, ...] = ()


def score_settings(pixel: Mapping[str, Any], ratio_k: int = 16, device: str = "cpu",
                   volume: Mapping[str, Any] | None = None) -> ScoreSettings:
    """:class:`ScoreSettings` from the ``privacy.pixel`` config group (``refine`` sub-group optional) and the
    ``privacy.volume`` group (``max_shift``, ``flips``)."""
    vol = dict(volume or {})
    ref = dict(pixel.get("refine") or {})
    q = float(ref.pop("quantile", 0.5))
    if "start_angles" in ref:
        ref["start_angles"] = tuple(float(a) for a in ref["start_angles"])
    return ScoreSettings(candidates=int(pixel.get("candidates", 8)), max_shift=int(pixel.get("max_shift", 2)),
                         ssim_top=int(pixel.get("ssim_top", 3)), batch=int(pixel.get("batch", 64)),
                         ratio_k=int(ratio_k), device=device, refine=RefineSettings(**ref), refine_quantile=q,
                         volume_max_shift=int(vol.get("max_shift", 2)),
                         volume_flips=tuple(int(a) for a in vol.get("flips") or ()))


def align(queries01: np.ndarray, train01: np.ndarray, cand: np.ndarray, mats, settings: ScoreSettings
          ) -> dict[str, np.ndarray]:
    """Aligned Pearson/SSIM of queries against candidates: the 2D grid search (:func:`.pixel.aligned_scores`)
    for ``(N, C, H, W)`` images, the 3D shift search (:func:`.volume.aligned_scores_volume`) for volumes."""
    if queries01.ndim == 5:
        return aligned_scores_volume(queries01, train01, cand, settings.volume_max_shift, settings.ssim_top,
                                     max(1, settings.batch // 4), settings.volume_flips, settings.device)
    return aligned_scores(queries01, train01, cand, mats, settings.max_shift, settings.ssim_top, settings.batch,
                          settings.device)


def candidate_lists(*idx_lists: np.ndarray) -> np.ndarray:
    """Union of several ``(N, k_i)`` index lists per row, duplicates replaced by ``-1``: ``(N, sum k_i)``."""
    cand = np.concatenate(idx_lists, axis=1).astype(np.int64)
    srt = np.sort(cand, axis=1)
    dup = np.zeros_like(srt, dtype=bool)
    dup[:, 1:] = srt[:, 1:] == srt[:, :-1]
    return np.where(dup, -1, srt)


def query_scores(name: str, queries01: np.ndarray, train01: np.ndarray, cache: NeighbourCache,
                 identity: np.ndarray, mats, settings: ScoreSettings,
                 prefilter: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
    """All neighbour-based scores of query set ``name`` (registered in ``cache``) against ``train``.

    Args:
        queries01: ``(N, C, H, W)`` float ``[0, 1]`` (or volumes ``(N, C, D, H, W)``: :func:`align`).
        train01: ``(Nt, C, H, W)`` float ``[0, 1]`` (likewise).
        identity: ``(Nt,)`` patient identity of training images (duplicates merged).
        mats: warp grid for the aligned pixel search.
        prefilter: ``(min low-res Pearson, min embedding cosine)``: the aligned search runs only for queries
            reaching either value; others get ``pearson = ssim = -1`` (no pixel flag).

    Returns (all ``(N,)``): ``pearson``/``pearson_index``, ``ssim``/``ssim_index`` (aligned pixel scores),
    ``embedding``/``embedding_index`` (max cosine), ``ratio``/``ratio_index`` (NN distance ratio),
    ``lowres`` (max low-res Pearson), ``searched`` (bool, aligned search ran), ``grid_pearson`` (the grid
    search's Pearson before refinement), ``refined`` (bool, continuous refinement ran); and ``refine_floor``
    (a scalar array: the grid Pearson from which queries are refined).

    With ``settings.refine.top > 0`` the ``refine.top`` best grid-Pearson candidates of every searched query
    whose grid Pearson reaches the floor are aligned continuously (:func:`~synthgen.privacy.refine.refine_pairs`)
    and ``pearson`` becomes the larger of the grid and the refined value.
    """
    k = settings.candidates
    es, ei = cache.get("embedding", name, "train", max(k, settings.ratio_k))
    ls, li = cache.get("lowres", name, "train", k)
    out: dict[str, np.ndarray] = {"embedding": es[:, 0].copy(), "embedding_index": ei[:, 0].copy(),
                                  "lowres": ls[:, 0].copy()}
    out["ratio"], out["ratio_index"] = distance_ratio(es[:, :settings.ratio_k], ei[:, :settings.ratio_k], identity)
    searched = np.ones(len(queries01), dtype=bool)
    if prefilter is not None:
        searched = (ls[:, 0] >= prefilter[0]) | (es[:, 0] >= prefilter[1])
    rows = np.flatnonzero(searched)
    cand = candidate_lists(ei[rows, :k], li[rows, :k])
    al = align(queries01[rows], train01, cand, mats, settings)
    for key in ("pearson", "ssim"):
        full = np.full(len(queries01), -1.0, np.float32)
        full[rows] = al[key]
        idx = np.full(len(queries01), -1, np.int64)
        idx[rows] = al[f"{key}_index"]
        out[key], out[f"{key}_index"] = full, idx
    out["searched"] = searched
    out["grid_pearson"] = out["pearson"].copy()
    out["refined"] = np.zeros(len(queries01), dtype=bool)
    floor = settings.refine_floor
    if floor is None:
        vals = al["pearson"][al["pearson"] > -1]
        floor = float(np.quantile(vals, settings.refine_quantile)) if len(vals) else 1.0
    out["refine_floor"] = np.asarray(floor, np.float64)
    if settings.refine.top > 0 and len(rows) and queries01.ndim == 4:       # (volumes: the shift search only)
        go = np.flatnonzero(al["pearson"] >= floor)
        pairs = al["top_index"][go, :settings.refine.top]
        r = refine_pairs(queries01[rows[go]], train01, pairs, settings.refine)
        best = r.argmax(1)
        rb = r[np.arange(len(go)), best]
        better = rb > out["pearson"][rows[go]]
        upd = rows[go][better]
        out["pearson"][upd] = rb[better]
        out["pearson_index"][upd] = pairs[np.arange(len(go)), best][better]
        out["refined"][rows[go]] = True
    return out
