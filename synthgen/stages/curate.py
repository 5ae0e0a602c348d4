"""The curate stage: ``data/generated`` -> ``data/curated/cohort.{npz,json}`` + ``metrics/boost.json``.

Pipeline order (issue 14): prepare -> train -> generate -> curate -> privacy -> evaluate -> export.

1. Scores every generated sample with the evaluate stage's domain classifier, trained on the real TRAINING
   split only (``evaluate.classifier`` + ``evaluate.features``, cached under ``evaluate.cache_dir``: curate
   and evaluate share one trained model): ``curate_confidence`` and ``curate_realism``
   (:mod:`synthgen.curation.scores`), then ``curate_nn_synthetic`` while filtering
   (:mod:`synthgen.curation.filter`, thresholds in ``curate.filter``). Ordinary samples are de-duplicated
   before boost candidates, each group by decreasing confidence.
2. Ordinary samples (``per_class``/``counts``/``balance_to``) ship when the filter keeps them. Boost candidates
   (the generated cohort's ``boost_candidate`` rows, drawn for ``curate.classes``) that the filter keeps go,
   best first, to the boost plan (:func:`ship_boost_candidates`), which says which of them ship.
3. Writes ``cohort.npz`` with every per-sample key of the generated cohort for the shipped rows, ``index``
   ``(N,)`` int64 (row in the generated cohort) and ``curate_confidence`` / ``curate_realism`` /
   ``curate_nn_synthetic`` ``(N,)`` float32; ``cohort.json`` = the generated ``cohort.json`` + a ``curation``
   summary (counts in/kept/shipped per class, drops per reason, thresholds, the plan's lines);
   ``metrics/boost.json`` (the plan's JSON, or why there is no plan) and prints the plan.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..curation.filter import REASONS, Thresholds, apply_filter
from ..curation.plan_validation import load_plan_validation
from ..curation.scores import classifier_scores
from ..data.prepared import load_meta, load_split
from ..data.symmetries import parse_symmetries
from ..errors import ConfigError, InputError, StageFailed
from ..threads import torch_threads
from ..io import atomic_path, save_npz, write_json
from ..metrics.classifier import Recipe
from ..metrics.features import load_or_train
from ..metrics.synthetic import load_cohort
from ..metrics.utility import LabeledImages

log = logging.getLogger(__name__)

SCORE_KEYS = ("confidence", "realism", "nn_synthetic")
BOOST_JSON = "boost.json"


def ship_boost_candidates(train: LabeledImages, val: LabeledImages | None, candidates: LabeledImages,
                          candidate_guidance: np.ndarray, classes: Sequence[str], class_names: Sequence[str],
                          plan_cfg: Mapping[str, Any], recipe: Recipe, seed: int
                          ) -> tuple[np.ndarray, dict[str, Any], list[str]]:
    """Which filter-kept boost candidates ship: ``(rows of candidates, metrics/boost.json dict, lines)``.

    ``candidates`` are ordered best first. With ``curate.plan.enabled`` false or no boosted classes every
    candidate ships (the user asked for them; the filter has already dropped the bad ones). Otherwise the
    boost plan chosen on ``val`` (``synthgen.curation.plan.choose_boost_plan``; the prepared validation split
    or ``curate.plan.validation``: :mod:`synthgen.curation.plan_validation`) decides.
    """
    if not classes or not bool(plan_cfg.get("enabled", True)):
        why = "no boosted classes (curate.classes is empty)" if not classes else "curate.plan.enabled is false"
        counts = {c: int((candidates.labels == class_names.index(c)).sum()) for c in classes}
        lines = [f"{c}: boost plan off ({why}), all {n} filter-kept candidates shipped" for c, n in counts.items()]
        return (np.arange(len(candidates.labels)),
                {"enabled": False, "reason": why, "classes": list(classes), "shipped": counts}, lines)
    try:
        from ..curation.plan import choose_boost_plan
    except ImportError as e:
        raise ConfigError("curate.plan.enabled", f"the boost plan module is missing ({e}); set "
                                                 "curate.plan.enabled=false to ship every kept candidate") from None
    plan = choose_boost_plan(train, val, candidates, candidate_guidance, list(classes), list(class_names),
                             plan_cfg, recipe, seed)
    return np.asarray(plan.selected_indices(), dtype=np.int64), plan.to_json(), list(plan.summary_lines())


def _read_generated(folder: Path, meta: dict) -> tuple[dict[str, np.ndarray], dict, np.ndarray]:
    """Every per-sample array of ``folder/cohort.npz``, its ``cohort.json`` and the images as float32 [0, 1]."""
    npz = folder / "cohort.npz"
    images01, _labels, info = load_cohort(npz, meta)
    if not (folder / "cohort.json").exists():
        raise InputError(folder / "cohort.json", "missing: run the generate stage first (dvc repro generate)")
    with np.load(npz, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    n = len(images01)
    return {k: v for k, v in arrays.items() if v.ndim >= 1 and len(v) == n}, info, images01


def _labeled(images: np.ndarray, labels: np.ndarray) -> LabeledImages:
    return LabeledImages(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
                         np.asarray(labels, dtype=np.int64))


def curate(cfg: DictConfig) -> dict[str, Any]:
    """Run the stage for a composed config; returns the ``curation`` summary."""
    with torch_threads(cfg.curate.get("threads")):
        return _curate(cfg)


def _curate(cfg: DictConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    ccfg = OmegaConf.to_container(cfg.curate, resolve=True)
    prepared = Path(cfg.paths.prepared)
    meta = load_meta(prepared)
    names = [str(c) for c in meta["class_names"]]
    classes = [str(c) for c in ccfg.get("classes") or []]
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ConfigError("curate.classes", f"unknown class {unknown}; classes are {names}")
    thresholds = Thresholds.from_config(ccfg.get("filter") or {})
    plan_cfg = ccfg.get("plan") or {}
    plan_on = bool(classes) and bool(plan_cfg.get("enabled", True))
    train_raw = load_split(prepared, "train", as_float=False)
    # read (and check) the plan's validation images before the costly scoring: a bad file fails in seconds
    validation = (load_plan_validation(prepared, plan_cfg.get("validation"), names, classes, train_raw.images)
                  if plan_on else None)
    arrays, gen_meta, syn01 = _read_generated(Path(ccfg["input"]), meta)
    labels = arrays["labels"].astype(np.int64)
    n = len(labels)
    is_cand = arrays.get("boost_candidate", np.zeros(n, bool)).astype(bool)
    guidance = arrays.get("guidance", np.ones(n, np.float32)).astype(np.float32)

    ecfg = cfg.evaluate
    symmetries = parse_symmetries(cfg.data.get("symmetries") if "data" in cfg else None)
    shape = train_raw.images.shape[1:]  # picks the classifier's size preset
    fe_recipe = Recipe.from_config(ecfg.classifier, symmetries=symmetries, image_shape=shape,
                                   steps=int(ecfg.features.steps))
    extractor = load_or_train(train_raw.images, train_raw.labels, len(names), fe_recipe, int(ecfg.features.seed),
                              bool(ecfg.features.balanced), ecfg.get("cache_dir"))
    t_fe = time.perf_counter()
    train = _labeled(train_raw.images.astype(np.float32) / np.iinfo(train_raw.images.dtype).max, train_raw.labels)
    real_feats = extractor(train.images)
    syn = _labeled(syn01, labels)
    scores = classifier_scores(extractor, syn.images, labels, real_feats, train.labels, thresholds.realism_k,
                               bf16=fe_recipe.bf16)
    t_sc = time.perf_counter()
    # ordinary samples first, then candidates; within each, most confident first
    priority = is_cand.astype(np.float64) * 2.0 - scores.confidence.astype(np.float64)
    result = apply_filter(scores.confidence, scores.realism, arrays["images"], labels, priority, thresholds)
    t_f = time.perf_counter()

    cand_rows = np.flatnonzero(result.kept & is_cand)
    cand_rows = cand_rows[np.argsort(-scores.confidence[cand_rows], kind="stable")]
    chosen, boost_json, lines = ship_boost_candidates(
        train, validation.images if validation else None, LabeledImages(syn.images[torch.from_numpy(cand_rows)],
                                                               labels[cand_rows]),
        guidance[cand_rows], classes, names, plan_cfg,
        Recipe.from_config(ecfg.classifier, symmetries=symmetries, image_shape=shape), int(cfg.seed))
    shipped = np.sort(np.concatenate([np.flatnonzero(result.kept & ~is_cand), cand_rows[chosen]]))
    if validation is not None:
        boost_json["validation"] = validation.describe()
    write_json(Path(cfg.paths.metrics) / BOOST_JSON, boost_json)  # the plan's verdict stands even if nothing ships
    for line in lines:
        print(f"boost plan: {line}")
    if len(shipped) == 0:
        kept = int(result.kept.sum())
        why = (f"the boost plan shipped none of the {kept} filter-kept candidates (no gain on validation: "
               f"{Path(cfg.paths.metrics) / BOOST_JSON}) and no other class was generated" if kept else
               f"the filter dropped all {n} ({json.dumps(result.counts())}); check the generator "
               "(reports/samples.png) or loosen curate.filter")
        raise StageFailed(f"{Path(ccfg['input']) / 'cohort.npz'}: nothing to ship: {why}")

    per_class = {}
    for c, name in enumerate(names):
        m = labels == c
        per_class[name] = {
            "in": int(m.sum()), "kept": int((m & result.kept).sum()), "shipped": int((labels[shipped] == c).sum()),
            "candidates_in": int((m & is_cand).sum()), "candidates_kept": int((m & is_cand & result.kept).sum()),
            "dropped": {r: int((m & (result.reason == i)).sum()) for i, r in enumerate(REASONS) if r != "kept"}}
    for name, v in per_class.items():
        if v["in"] and not v["kept"]:
            log.warning("curate: class %s ships none of its %d generated samples (dropped: %s); look at "
                        "reports/samples.png: the generator may not have learned it", name, v["in"], v["dropped"])
        elif v["in"] and not v["shipped"]:  # the filter kept some; the boost plan refused them (boost.json says why)
            log.info("curate: class %s ships none of its %d filter-kept samples: the boost plan found no gain "
                     "on validation", name, v["kept"])
    summary = {"n_in": n, "n_kept": int(result.kept.sum()), "n_shipped": int(len(shipped)),
               "dropped": {r: v for r, v in result.counts().items() if r != "kept"},
               "per_class": per_class, "thresholds": thresholds.to_dict(), "classes": classes,
               "feature_extractor": extractor.key, "plan": lines,
               "plan_validation": validation.source if validation else None}
    out = {k: v[shipped] for k, v in arrays.items()}
    out["index"] = shipped.astype(np.int64)
    for k, v in (("confidence", scores.confidence), ("realism", scores.realism), ("nn_synthetic", result.nn_synthetic)):
        out[f"curate_{k}"] = np.asarray(v, dtype=np.float32)[shipped]
    out_dir = Path(ccfg["output"])
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        save_npz(tmp / "cohort.npz", **out)
        write_json(tmp / "cohort.json", {**gen_meta, "curation": summary})
    log.info("curate: %d in, %d kept (dropped %s), %d shipped -> %s; extractor %.1fs, scores %.1fs, filter %.1fs, "
             "total %.1fs", n, summary["n_kept"], json.dumps(summary["dropped"]), len(shipped), out_dir,
             t_fe - t0, t_sc - t_fe, t_f - t_sc, time.perf_counter() - t0)
    return summary


__all__ = ["SCORE_KEYS", "curate", "ship_boost_candidates"]
