"""The privacy audit: score a synthetic cohort against train and holdout, calibrate, flag, gate.

    result = run_audit(train, holdout, synthetic, cfg, reference=reference)   # ImageSets + ``privacy`` config

Roles: ``train`` (the model's training images), ``holdout`` ``H`` (real images of unseen patients: per-sample
thresholds are calibrated on holdout->train statistics; the DCR's "unseen" side), ``reference`` ``R`` (real
unseen images *of the training distribution*, no patient shared with ``H``: the null that cohort statistics
are compared with -- the flag rate and DCR share of real data, the membership attack's non-members).
Without a reference, a seeded half of the holdout's patients serves as ``R`` and the other half as ``H``
(:func:`~synthgen.privacy.inputs.split_holdout`).

Steps (each the same for the CLI ``synthgen audit`` and the pipeline's ``privacy`` stage):

1. exact duplicates by hashing quantized pixels (train<->train, holdout->train, synthetic->train), at full
   resolution; every later step on images at the working resolution (:mod:`.working`: ``privacy.working_size``,
   volumes ``privacy.volume.working_size``), except the loss attack, which sees the model's own inputs;
2. representations: copy-detection embedding (trained on train, cached) and low-resolution pixels; neighbour
   lists computed once per representation (:class:`NeighbourCache`);
3. per-sample scores for holdout and synthetic queries alike (:func:`query_scores`);
4. thresholds calibrated on the holdout scores (native duplicates excluded) per class;
5. per-sample flags with the rule that fired and the matched training index; a seeded sample of the
   reference (at most ``gates.reference_max_samples``) scored and flagged the same way, for counts only;
6. cohort statistics (the flagged share against the reference's flag rate; on the kept samples: DCR against
   the reference's share, membership inference with reference non-members) and the cohort-level gates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import InputError
from ..threads import torch_threads
from .calibrate import Threshold, calibrate
from .dcr import class_matched_pairs, dcr_difference_test, dcr_share, equal_size_subsets
from .embedding import EmbeddingConfig, embed, load_or_train
from .exact import duplicate_groups, duplicate_pairs, hash_images, match_exact
from .flagged import class_counts, reference_rows
from .gate import RULES, cohort_gates, flag_samples
from .inputs import ImageSet, check_compatible, check_disjoint_patients, check_labels, split_holdout
from .knn import NeighbourCache, cosine_to_distance, knn
from .membership import ErrorFn, distance_attack, loss_attack
from .pixel import lowres, warp_grid
from .policy import apply_policy, neighbour_scores
from .ratio import merge_identities
from .scores import ScoreSettings, query_scores, score_settings
from .working import at_working

log = logging.getLogger(__name__)


@dataclass
class AuditResult:
    """Everything the report and the pipeline need.

    Attributes:
        passed: every cohort-level gate passed.
        flags: ``(N_syn,)`` bool, sample dropped; ``rule``/``matched`` per sample (``""``/``-1`` if kept).
        scores: per-sample synthetic scores ``{name: (N_syn,)}``; ``holdout_scores`` likewise for holdout.
        thresholds: calibrated :class:`Threshold` per rule.
        gates: ``{gate: {value, limit, passed}}``; ``stats``: cohort statistics; ``duplicates``: native ones.
    """

    passed: bool
    flags: np.ndarray
    rules_fired: list[list[str]]
    rule: np.ndarray
    matched: np.ndarray
    score: np.ndarray
    scores: dict[str, np.ndarray]
    holdout_scores: dict[str, np.ndarray]
    thresholds: dict[str, Threshold]
    gates: dict[str, dict]
    stats: dict[str, Any]
    duplicates: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def _get(cfg: Mapping, path: str, default: Any = None) -> Any:
    cur: Any = cfg
    for part in path.split("."):
        if cur is None or part not in cur:
            return default
        cur = cur[part]
    return cur


def embedding_config(cfg: Mapping) -> EmbeddingConfig:
    e = _get(cfg, "embedding", {}) or {}
    keys = EmbeddingConfig.__dataclass_fields__
    kw = {k: tuple(e[k]) if isinstance(e[k], (list, tuple)) else e[k] for k in e if k in keys}
    return EmbeddingConfig(**kw, seed=int(_get(cfg, "seed", 0))) if "seed" not in kw else EmbeddingConfig(**kw)


def run_audit(train: ImageSet, holdout: ImageSet, synthetic: ImageSet, cfg: Mapping,
              error_fn: ErrorFn | None = None, cache_dir: str | None = None,
              loss_info: Mapping[str, Any] | None = None, reference: ImageSet | None = None,
              reference_origin: str = "given", nonmembers: ImageSet | None = None) -> AuditResult:
    """Audit ``synthetic`` against ``train`` with thresholds calibrated on ``holdout`` (see module doc).

    ``reference``: real unseen in-distribution images (``None``: a seeded half of the holdout's patients,
    logged as a warning; ``stats["reference"]`` records which, ``reference_origin`` naming a given one).
    Synthetic and reference labels must be training classes, and the reference shares no patient with train
    or holdout (else :class:`InputError`).

    ``nonmembers``: real unseen in-distribution images for the membership attacks when they must differ from
    the reference (``None``: the reference). The DCR reference must share no scan with the holdout; the
    attacks do not use the holdout, only an in-distribution non-member set (for sources without patient ids
    the pipeline passes the rest of the official val split here while the reference is the official test
    split, which may be shifted: docs/privacy.md).

    ``cfg`` is the ``privacy`` config group (plain mapping); ``error_fn(images01, labels) -> (N,)`` adds the
    loss-based membership attack (diffusion models; members and non-members capped by
    ``mia_loss.max_samples``, else ``gates.mia_max_samples``) and gates on it; ``loss_info`` is recorded
    with it in ``stats["mia_loss"]`` (without ``error_fn``: why the attack does not apply, not gated);
    ``cache_dir`` overrides ``embedding.cache_dir``.
    """
    for s in (train, holdout, synthetic) + (() if reference is None else (reference,)):
        if len(s) == 0:
            raise InputError(s.source, "no images")
    check_compatible([train, holdout, synthetic] + ([] if reference is None else [reference]))
    check_labels(synthetic, train, "synthetic")
    ref_origin = reference_origin
    if reference is None:
        reference, holdout = split_holdout(holdout, int(_get(cfg, "seed", 0)))
        ref_origin = "holdout half"
        log.warning("no reference set: using a seeded half of the holdout's patients (%d images) as the "
                    "reference and the other half (%d) as the holdout; this assumes the holdout holds no "
                    "near-duplicates across patients (e.g. adjacent slices) and comes from the training "
                    "distribution (a shifted holdout makes the gate stricter)", len(reference), len(holdout))
    check_labels(reference, train, "reference")
    check_disjoint_patients(reference, holdout, "holdout")
    check_disjoint_patients(reference, train, "training set")
    if nonmembers is not None:
        if len(nonmembers) == 0:
            raise InputError(nonmembers.source, "no images")
        check_compatible([train, nonmembers])
        check_labels(nonmembers, train, "non-member")
        check_disjoint_patients(nonmembers, train, "training set")
    with torch_threads(_get(cfg, "threads")):
        return _run(train, holdout, synthetic, reference, ref_origin, cfg, error_fn, cache_dir, loss_info,
                    nonmembers)


def _run(train: ImageSet, holdout: ImageSet, synthetic: ImageSet, reference: ImageSet, ref_origin: str,
         cfg: Mapping, error_fn: ErrorFn | None, cache_dir: str | None,
         loss_info: Mapping[str, Any] | None, nonmembers: ImageSet | None = None) -> AuditResult:
    t_start, c_start = time.time(), time.process_time()
    timings: dict[str, float] = {}  # wall seconds per step; *_cpu: user+sys CPU seconds of this process
    seed = int(_get(cfg, "seed", 0))
    kcfg = _get(cfg, "knn", {}) or {}
    cache = NeighbourCache(float(kcfg.get("chunk_mb", 256)), str(kcfg.get("backend", "auto")),
                           str(kcfg.get("device", "cpu")))

    # 1. exact duplicates
    qdtype = _get(cfg, "quantize_dtype") or (train.dtype if train.dtype in ("uint8", "uint16") else "uint8")
    h_train = hash_images(train.images, qdtype)
    train_groups = duplicate_groups(h_train)
    hold_exact = match_exact(hash_images(holdout.images, qdtype), h_train)
    syn_exact = match_exact(hash_images(synthetic.images, qdtype), h_train)
    ref_exact = match_exact(hash_images(reference.images, qdtype), h_train)
    non_exact = None if nonmembers is None else match_exact(hash_images(nonmembers.images, qdtype), h_train)
    identity = merge_identities(train.patient_ids, train_groups)
    timings["exact"] = time.time() - t_start

    # every score below on images at the working resolution (working.py); full resolution kept for the loss attack
    full_train, full_nonmembers, full_reference = train, nonmembers, reference
    t0 = time.time()
    ws = _get(cfg, "working_size" if train.images.ndim == 4 else "volume.working_size")
    train, holdout, synthetic, reference = (at_working(s, ws) for s in (train, holdout, synthetic, reference))
    nonmembers = None if nonmembers is None else at_working(nonmembers, ws)
    timings["working_resolution"] = time.time() - t0

    # 2. representations
    t0, c0 = time.time(), time.process_time()
    model = load_or_train(train.images, embedding_config(cfg),
                          cache_dir if cache_dir is not None else _get(cfg, "embedding.cache_dir"))
    timings["embedding_train_or_load"] = time.time() - t0
    timings["embedding_train_or_load_cpu"] = time.process_time() - c0
    t0 = time.time()
    dev = str(kcfg.get("device", "cpu"))
    grp = "pixel" if train.images.ndim == 4 else "volume"                  # volumes: their own pooling
    factor = int(_get(cfg, f"{grp}.lowres_factor", 4 if grp == "pixel" else 2))
    margin = int(_get(cfg, f"{grp}.lowres_margin", 0))
    for name, s in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
        cache.add("embedding", name, embed(model, s.images, device=dev))
        cache.add("lowres", name, lowres(s.images, factor, margin))
    cache.add("embedding", "reference", embed(model, reference.images, device=dev))
    if nonmembers is not None:
        cache.add("embedding", "nonmembers", embed(model, nonmembers.images, device=dev))
    timings["embed"] = time.time() - t0

    # 3. scores, holdout first (it also sets the prefilter)
    settings = score_settings(_get(cfg, "pixel", {}) or {}, int(_get(cfg, "ratio.k", 16)), dev,
                              _get(cfg, "volume", {}) or {})
    mats = warp_grid(list(_get(cfg, "pixel.rotations", [])), list(_get(cfg, "pixel.scales", [])),
                     bool(_get(cfg, "pixel.half_pixel_scales", True)), tuple(train.images.shape[-2:]))
    t0 = time.time()
    keep_cal = hold_exact < 0
    pre_q = float(_get(cfg, "pixel.prefilter_quantile", 0.0))
    prefilter = None
    if pre_q > 0:
        ls, _ = cache.get("lowres", "holdout", "train", settings.candidates)
        es, _ = cache.get("embedding", "holdout", "train", max(settings.candidates, settings.ratio_k))
        prefilter = (float(np.quantile(ls[keep_cal, 0], pre_q)), float(np.quantile(es[keep_cal, 0], pre_q)))
    hs = query_scores("holdout", holdout.images, train.images, cache, identity, mats, settings, prefilter)
    settings = replace(settings, refine_floor=float(hs["refine_floor"]))       # the same floor for every set
    timings["holdout_scores"] = time.time() - t0
    t0 = time.time()
    ss = query_scores("synthetic", synthetic.images, train.images, cache, identity, mats, settings, prefilter)
    timings["synthetic_scores"] = time.time() - t0

    # 4. calibration
    cal = _get(cfg, "calibration", {}) or {}
    q = float(cal.get("quantile", 0.999))
    mcc = int(cal.get("min_class_count", 50))
    floors = cal.get("floors", {}) or {}
    tail = {"tail": str(cal.get("tail", "empirical")), "tail_fraction": float(cal.get("tail_fraction", 0.1))}
    thresholds = {r: calibrate(r, hs[r], holdout.labels, keep_cal, q, floors.get(r), mcc, **tail)
                  for r in ("pearson", "ssim", "embedding")}
    thresholds["ratio"] = calibrate("ratio", hs["ratio"], holdout.labels, keep_cal, q,
                                    cal.get("ratio_ceiling", 1 / 3), mcc, higher_is_copy=False, **tail)
    policy = str(_get(cfg, "policy.neighbour_slice", "copy"))
    neigh = (neighbour_scores(train.images, identity, cache.vectors("embedding", "train"), mats, settings, seed=seed)
             if policy == "allowed" else {})
    thresholds, policy_info = apply_policy(thresholds, neigh, policy,
                                           float(_get(cfg, "policy.neighbour_quantile", 0.95)))

    # 5. flags; reference images scored and flagged the same way: the null of the flagged-share gate
    flags, fired, rule, matched, score = flag_samples(ss, syn_exact, synthetic.labels, thresholds)
    hold_flags, *_ = flag_samples(hs, np.full(len(holdout), -1), holdout.labels, thresholds)
    t0 = time.time()
    flagged_ref = reference_flags(reference, ref_exact, synthetic.labels, train.images, cache, identity, mats,
                                  settings, prefilter, thresholds, (factor, margin),
                                  int(_get(cfg, "gates.reference_max_samples", 2000)), seed + 3)
    timings["reference_scores"] = time.time() - t0

    # 6. cohort statistics on the kept cohort, then gates
    t0 = time.time()
    kept = ~flags
    mia_max = int(_get(cfg, "gates.mia_max_samples", 5000))
    margin = float(_get(cfg, "gates.dcr_margin", 0.05))
    stats = cohort_stats(full_train, holdout, synthetic, kept, cache, seed, mia_max, error_fn,
                         int(_get(cfg, "mia_loss.max_samples", None) or mia_max), reference=full_reference,
                         reference_valid=ref_exact < 0, dcr_margin=margin, nonmembers=full_nonmembers,
                         nonmembers_valid=None if non_exact is None else non_exact < 0)
    stats["reference"] = {"source": reference.source, "origin": ref_origin, "n": len(reference),
                          "exact_copies_of_train_excluded": int((ref_exact >= 0).sum())}
    stats["nonmembers"] = ({"source": reference.source, "same_as": "reference"} if nonmembers is None else
                           {"source": nonmembers.source, "n": len(nonmembers),
                            "exact_copies_of_train_excluded": int((non_exact >= 0).sum())})
    stats["flagged_ref"] = flagged_ref
    timings["cohort_stats"] = time.time() - t0
    if loss_info is not None:
        stats["mia_loss"] = {**dict(loss_info), **stats.get("mia_loss", {})}
    stats.update({
        "n_train": len(train), "n_holdout": len(holdout), "n_reference": len(reference),
        "n_synthetic": len(synthetic),
        "n_flagged": int(flags.sum()), "flagged_share": float(flags.mean()),
        "n_kept": int(kept.sum()),
        "working_resolution": {"input_shape": list(full_train.images.shape[2:]),
                               "working_shape": list(train.images.shape[2:]), "working_size": ws},
        "by_rule": {r: int(sum(r in f for f in fired)) for r in RULES},
        "first_rule": {r: int((rule == r).sum()) for r in RULES},
        "exact_copies_before_drop": int((syn_exact >= 0).sum()),
        "exact_copies_after_drop": int(((syn_exact >= 0) & kept).sum()),
        "holdout_false_flag_rate": float(hold_flags[keep_cal].mean()),
        "policy": policy_info,
        "refine": {"top": settings.refine.top, "floor": settings.refine_floor,
                   "synthetic_refined_share": float(ss["refined"].mean())},
        "prefilter": None if prefilter is None else {"quantile": pre_q, "lowres_pearson": prefilter[0],
                                                     "embedding_cosine": prefilter[1],
                                                     "synthetic_searched_share": float(ss["searched"].mean())},
        "per_class": {int(c): {"n": int((synthetic.labels == c).sum()),
                               "flagged": int((flags & (synthetic.labels == c)).sum())}
                      for c in np.unique(synthetic.labels)},
        "score_quantiles": {r: {"synthetic": _quantiles(ss[r]), "holdout": _quantiles(hs[r][keep_cal])}
                            for r in ("pearson", "ssim", "embedding", "ratio")},
    })
    gates = cohort_gates(stats, _get(cfg, "gates", {}) or {})
    timings["total"] = time.time() - t_start
    timings["total_cpu"] = time.process_time() - c_start
    duplicates = {
        "quantize_dtype": qdtype,
        "within_train": [list(map(int, g)) for g in train_groups],
        "within_train_pairs": len(duplicate_pairs(train_groups)),
        "holdout_in_train": [[int(h), int(t)] for h, t in enumerate(hold_exact) if t >= 0],
        "synthetic_in_train": int((syn_exact >= 0).sum()),
    }
    return AuditResult(all(g["passed"] for g in gates.values()), flags, fired, rule, matched, score, ss, hs,
                       thresholds, gates, stats, duplicates, timings)


def reference_flags(reference: ImageSet, ref_exact: np.ndarray, labels_syn: np.ndarray, train01: np.ndarray,
                    cache: NeighbourCache, identity: np.ndarray, mats, settings: ScoreSettings,
                    prefilter: tuple[float, float] | None, thresholds: dict[str, Threshold], factor: tuple[int, int],
                    cap: int, seed: int) -> dict[str, Any]:
    """Flag counts of real unseen reference images under the synthetic cohort's rules and thresholds.

    Scores a seeded subsample of at most ``cap`` reference images that are not exact copies of training
    images (:func:`~synthgen.privacy.flagged.reference_rows`, allocated by the synthetic class mix) with
    :func:`query_scores` (same prefilter) and :func:`flag_samples` (same thresholds). ``cache`` must hold the
    reference's ``embedding`` vectors; the sample is registered as ``reference_sample``.

    Returns ``n``, ``n_available``, ``n_flagged``, ``share``, ``by_rule`` and ``per_class``
    ``{c: {n, flagged}}``: counts only -- these flags drop nothing and are never exported.
    """
    valid = np.flatnonzero(np.asarray(ref_exact) < 0)
    rows = valid[reference_rows(reference.labels[valid], labels_syn, cap, seed)]
    out: dict[str, Any] = {"n": int(len(rows)), "n_available": int(len(valid)), "max_samples": int(cap),
                           "sample": "seeded, allocated over the synthetic classes by their shares"}
    if not len(rows):
        return {**out, "n_flagged": 0, "share": float("nan"), "by_rule": {}, "per_class": {}}
    cache.add("embedding", "reference_sample", cache.vectors("embedding", "reference")[torch.as_tensor(rows)])
    cache.add("lowres", "reference_sample", lowres(reference.images[rows], *factor))
    rs = query_scores("reference_sample", reference.images[rows], train01, cache, identity, mats, settings,
                      prefilter)
    f, fired, *_ = flag_samples(rs, np.full(len(rows), -1), reference.labels[rows], thresholds)
    return {**out, "n_flagged": int(f.sum()), "share": float(f.mean()),
            "by_rule": {r: int(sum(r in x for x in fired)) for r in RULES},
            "per_class": class_counts(f, reference.labels[rows])}


def _auc_at_chance(auc: float, n1: int, n2: int, z_max: float = 3.29) -> bool:
    """Is ``auc`` within ``z_max`` null standard errors of 0.5? (Mann-Whitney null variance
    ``(n1 + n2 + 1) / (12 n1 n2)``; ``z_max`` 3.29 = two-sided 0.1%: a diagnostic, rarely raised by chance.)"""
    if not (n1 > 0 and n2 > 0 and np.isfinite(auc)):
        return True
    return bool(abs(auc - 0.5) <= z_max * np.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2)))


def _quantiles(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, np.float64)
    if not len(x):
        return {}
    qs = np.quantile(x, [0.0, 0.5, 0.99, 0.999, 1.0])
    return {k: float(v) for k, v in zip(("min", "median", "q99", "q999", "max"), qs)}


def cohort_stats(train: ImageSet, holdout: ImageSet, synthetic: ImageSet, kept: np.ndarray,
                 cache: NeighbourCache, seed: int, mia_max: int, error_fn: ErrorFn | None,
                 loss_max: int | None = None, *, reference: ImageSet, reference_valid: np.ndarray | None = None,
                 dcr_margin: float = 0.05, nonmembers: ImageSet | None = None,
                 nonmembers_valid: np.ndarray | None = None) -> dict[str, Any]:
    """DCR and membership-inference statistics (copy-detection embedding space), each against real data.

    ``cache`` must hold ``embedding`` vectors of ``train``, ``holdout``, ``synthetic`` and ``reference``.

    * ``dcr``/``dcr_all``: share of the kept / all synthetic samples closer to ``T_sub`` than to ``H_sub``
      (seeded train and holdout subsets of equal size, :func:`~synthgen.privacy.dcr.equal_size_subsets`),
      and the same share of the reference images
      (``reference_valid`` rows: exact copies of training images excluded), with the two-proportion test
      (:func:`~synthgen.privacy.dcr.dcr_difference_test`, ``dcr_margin``);
    * ``mia``/``mia_all``: distance attack, members = training images, non-members = ``nonmembers`` images
      (``None``: the reference; ``nonmembers_valid`` rows), equal numbers per class
      (:func:`~synthgen.privacy.dcr.class_matched_pairs`, at most ``mia_max`` in all);
    * ``mia_control``: the same attack with real images in place of the synthetic cohort, the holdout (or,
      with separate ``nonmembers``, the reference, since those non-members may share scans with the holdout):
      real images independent of both sides, so its AUC is ~0.5 when members and reference are exchangeable (a diagnostic
      of the null: ``null_met`` false and a warning when it is more than 3.29 null standard errors from 0.5;
      reported, never gated or subtracted);
    * ``mia_loss`` (with ``error_fn``): the loss attack on class-matched pairs, at most ``loss_max``.
    """
    e_train = cache.vectors("embedding", "train")
    e_hold = cache.vectors("embedding", "holdout")
    e_all = cache.vectors("embedding", "synthetic")
    valid = np.ones(len(reference), bool) if reference_valid is None else np.asarray(reference_valid, bool)
    ref_rows = np.flatnonzero(valid)
    if not len(ref_rows):
        raise InputError(reference.source, "every reference image is an exact copy of a training image")
    e_ref = cache.vectors("embedding", "reference")[ref_rows]
    y_ref = reference.labels[ref_rows]
    if nonmembers is None:
        non_set, non_rows, e_non, y_non = reference, ref_rows, e_ref, y_ref
    else:
        nv = np.ones(len(nonmembers), bool) if nonmembers_valid is None else np.asarray(nonmembers_valid, bool)
        non_set, non_rows = nonmembers, np.flatnonzero(nv)
        if not len(non_rows):
            raise InputError(nonmembers.source, "every non-member image is an exact copy of a training image")
        e_non, y_non = cache.vectors("embedding", "nonmembers")[non_rows], nonmembers.labels[non_rows]
    kw = dict(chunk_mb=cache.chunk_mb, backend=cache.backend, device=cache.device)
    sub, h_sub = equal_size_subsets(len(train), len(holdout), seed)

    def share(e: np.ndarray) -> dict[str, Any]:
        s_tr, _ = knn(e, e_train[sub], 1, **kw)
        s_ho, _ = knn(e, e_hold[h_sub], 1, **kw)
        return dcr_share(cosine_to_distance(s_tr[:, 0]), cosine_to_distance(s_ho[:, 0]))

    ref_share = share(e_ref)
    mem, non = class_matched_pairs(train.labels, y_non, mia_max, seed + 1)
    out: dict[str, Any] = {}
    for tag, rows in (("", np.flatnonzero(kept)), ("_all", np.arange(len(e_all)))):
        if not len(rows):
            out[f"dcr{tag}"] = {"share_syn": float("nan"), "difference": float("nan"), "p_value": 1.0, "n_syn": 0}
            out[f"mia{tag}"] = {"attack": "distance", "auc": float("nan"), "tpr_at_fpr": float("nan")}
            continue
        e_syn = e_all[rows]
        syn_share = share(e_syn)
        test = dcr_difference_test(syn_share["closer"], synthetic.labels[rows], ref_share["closer"], y_ref,
                                   dcr_margin)
        out[f"dcr{tag}"] = {**test, "p_value_vs_half": syn_share["p_value_vs_half"],
                            "ref_p_value_vs_half": ref_share["p_value_vs_half"],
                            "train_subset_size": int(len(sub)), "holdout_subset_size": int(len(h_sub)),
                            "space": "copy-detection embedding"}
        sm, _ = knn(e_train[mem], e_syn, 1, **kw)
        sn, _ = knn(e_non[non], e_syn, 1, **kw)
        out[f"mia{tag}"] = {**distance_attack(sm[:, 0], sn[:, 0]),
                            "nonmembers": "reference" if nonmembers is None else "nonmembers"}
    e_ctrl = e_hold if nonmembers is None else e_ref
    cm, _ = knn(e_train[mem], e_ctrl, 1, **kw)
    cn, _ = knn(e_non[non], e_ctrl, 1, **kw)
    ctrl = distance_attack(cm[:, 0], cn[:, 0])
    out["mia_control"] = {**ctrl, "queries": ("holdout" if nonmembers is None else "reference")
                          + " (real, in place of synthetic)",
                          "null_met": _auc_at_chance(ctrl["auc"], len(mem), len(non))}
    if not out["mia_control"]["null_met"]:
        log.warning("membership control AUC %.3f (members vs non-members scored against real images) is far from "
                    "0.5: the reference does not look like unseen training-distribution data; the MIA and DCR "
                    "nulls may be biased (see docs/privacy.md)", ctrl["auc"])
    if error_fn is not None:
        lm, ln = class_matched_pairs(train.labels, y_non, int(loss_max if loss_max is not None else mia_max),
                                     seed + 1)
        rimg = non_set.images[non_rows]
        out["mia_loss"] = {**loss_attack(error_fn, train.images[lm], train.labels[lm], rimg[ln], y_non[ln]),
                           "nonmembers": "reference" if nonmembers is None else "nonmembers"}
    return out
