"""The evaluate stage: fidelity, diversity and task utility of a synthetic cohort, per class.

Reads ``data/prepared`` (train, test, and ``train_uncut`` when ``data.rare`` is active) and a cohort
(``evaluate.cohort``, default ``data/generated/cohort.npz``); writes ``metrics/evaluate.json`` (a
``dvc metrics`` file: nested keys that ``dvc exp show`` flattens, e.g. ``utility.tstr.accuracy.mean``,
``fidelity.fd``, ``fidelity.fd_floor``, ``rare.synthetic.gap_closed_rare_recall``), the per-class recall
bar chart and the confusion matrices (PNG, ``dvc plots``).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ..data.prepared import load_meta, load_split
from ..data.symmetries import parse_symmetries
from ..errors import ConfigError, InputError
from ..threads import torch_threads
from ..io import write_json
from ..metrics.classifier import Recipe
from ..metrics.diversity import intra_class_ms_ssim
from ..metrics.features import load_or_train
from ..metrics.fidelity import fidelity_report
from ..metrics.plots import confusion_png, per_class_recall_png
from ..metrics.synthetic import load_cohort
from ..metrics.utility import ARMS, LabeledImages, only_classes, rare_gain, run_arms, summarize

log = logging.getLogger(__name__)

PER_CLASS_PNG = "evaluate_per_class.png"
CONFUSION_PNG = "evaluate_confusion.png"


def _clean(obj: Any, digits: int = 6) -> Any:
    """Round floats (stable JSON across tiny float noise) and turn NaN/inf into None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, digits) for v in obj]
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if not math.isfinite(f) else round(f, digits)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _labeled(images: np.ndarray, labels: np.ndarray) -> LabeledImages:
    return LabeledImages(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)),
                         np.asarray(labels, dtype=np.int64))


def _diversity(ecfg: DictConfig, syn: LabeledImages, real: LabeledImages, names: list[str]) -> dict[str, Any]:
    d = ecfg.diversity
    kw = dict(pairs=int(d.pairs_per_class), seed=int(d.seed), kernel_size=int(d.kernel_size), sigma=float(d.sigma))
    s = intra_class_ms_ssim(syn.images, syn.labels, names, **kw)
    r = intra_class_ms_ssim(real.images, real.labels, names, **kw)
    both = [c for c in names if s[c] is not None and r[c] is not None]
    ms_s = float(np.mean([s[c] for c in both])) if both else None
    ms_r = float(np.mean([r[c] for c in both])) if both else None
    return {"ms_ssim_synthetic": ms_s, "ms_ssim_real": ms_r,
            "ms_ssim_ratio": ms_s / ms_r if both and ms_r else None,
            "per_class": {c: {"synthetic": s[c], "real": r[c]} for c in names}}


def _rare_classes(cfg: DictConfig, names: list[str]) -> list[str]:
    rare = list(cfg.evaluate.get("rare_classes") or [])
    unknown = [c for c in rare if c not in names]
    if unknown:
        raise ConfigError("evaluate.rare_classes", f"unknown class {unknown}; classes are {names}")
    return rare


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Compute every metric for the configured cohort; writes the PNGs, returns the metrics dict."""
    with torch_threads(cfg.evaluate.get("threads")):
        return _evaluate(cfg)


def _evaluate(cfg: DictConfig) -> dict[str, Any]:
    ecfg = cfg.evaluate
    t0 = time.perf_counter()
    prepared = Path(ecfg.prepared)
    meta = load_meta(prepared)
    names = list(meta["class_names"])
    n_classes = len(names)
    rare = _rare_classes(cfg, names)
    train_raw = load_split(prepared, "train", as_float=False)
    test = load_split(prepared, "test")
    real = _labeled(train_raw.images.astype(np.float32) / np.iinfo(train_raw.images.dtype).max, train_raw.labels)
    test_l = _labeled(test.images, test.labels)
    uncut = None
    if rare and (prepared / "train_uncut.npz").exists() and meta.get("rare", {}).get("keep") is not None:
        u = load_split(prepared, "train_uncut")
        uncut = _labeled(u.images, u.labels)
    syn_x, syn_y, _info = load_cohort(ecfg.cohort, meta)
    k = int(ecfg.fidelity.k)
    if len(syn_x) <= k:  # PRDC's k-NN radii (and FD's covariance) need more than k synthetic images
        raise InputError(ecfg.cohort, f"{len(syn_x)} synthetic images: evaluation needs more than "
                                      f"evaluate.fidelity.k={k} (curation or the privacy audit removed the rest; "
                                      f"see metrics/curate.json and reports/privacy_report.json)")
    syn = _labeled(syn_x, syn_y)
    # The rare-class arms score real oversampled + the synthetic images of the rare classes only, so the
    # common classes' ordinary synthetic images (which alone can cost balanced accuracy) do not blur the
    # rare-class effect: trs_balanced_rare on the evaluated cohort (what the boost plan shipped), and, when
    # evaluate.raw_cohort is set, trs_balanced_raw on the generated cohort before curation and the plan.
    rare_idx = [names.index(c) for c in rare]
    boosted = only_classes(syn, rare_idx) if rare else None
    raw = _labeled(*load_cohort(ecfg.raw_cohort, meta)[:2]) if ecfg.get("raw_cohort") else None
    if raw is not None and rare:
        raw = only_classes(raw, rare_idx)

    # Flips/rotations only where the data source declares them (data.symmetries; none by default).
    symmetries = parse_symmetries(cfg.data.get("symmetries") if "data" in cfg else None)
    shape = train_raw.images.shape[1:]  # picks the classifier's size preset
    recipe = Recipe.from_config(ecfg.classifier, symmetries=symmetries, image_shape=shape)
    arms = [a for a in ecfg.utility.arms if a != "full_reference" or uncut is not None]
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise ConfigError("evaluate.utility.arms", f"unknown arm {bad}; known: {list(ARMS)}")
    seeds = [int(s) for s in ecfg.utility.seeds]
    fe_recipe = Recipe.from_config(ecfg.classifier, symmetries=symmetries, image_shape=shape,
                                   steps=int(ecfg.features.steps))

    from tqdm.auto import tqdm

    extra = {"trs_balanced_rare": boosted, "trs_balanced_raw": raw}
    extra = {a: pool for a, pool in extra.items() if pool is not None}
    # An arm whose pool holds no synthetic image is the oversampling arm itself, and a boost-plan pool that is
    # the whole cohort (only rare classes were generated) is trs_balanced: reuse those runs, not retrain.
    reuse = {a: "trtr_balanced" for a, pool in extra.items() if len(pool.labels) == 0 and "trtr_balanced" in arms}
    if boosted is not None and 0 < len(boosted.labels) == len(syn.labels) and "trs_balanced" in arms:
        reuse["trs_balanced_rare"] = "trs_balanced"
    total = (len(arms) + len(extra) - len(reuse)) * len(seeds) * recipe.steps + fe_recipe.steps
    with tqdm(total=total, desc="evaluate: classifier steps", mininterval=5.0, leave=False) as bar:
        extractor = load_or_train(train_raw.images, train_raw.labels, n_classes, fe_recipe,
                                  int(ecfg.features.seed), bool(ecfg.features.balanced), ecfg.get("cache_dir"),
                                  progress=bar.update)
        if extractor.cached:
            bar.update(fe_recipe.steps)
        t_fe = time.perf_counter()
        f = {k: extractor(v.images) for k, v in (("syn", syn), ("train", real), ("test", test_l))}
        fc = ecfg.fidelity
        fidelity = fidelity_report(f["syn"], syn.labels, f["train"], real.labels, f["test"], test_l.labels, names,
                                   int(fc.max_samples), int(fc.k), int(fc.kid_subsets), int(fc.kid_subset_size),
                                   int(fc.seed))
        diversity = _diversity(ecfg, syn, real, names)
        t_fid = time.perf_counter()
        runs = run_arms(arms, seeds, real, syn, test_l, n_classes, recipe, float(ecfg.utility.synthetic_share),
                        uncut, progress=bar.update)
        for arm, pool in extra.items():
            runs[arm] = runs[reuse[arm]] if arm in reuse else run_arms(
                ["trs_balanced"], seeds, real, pool, test_l, n_classes, recipe, float(ecfg.utility.synthetic_share),
                progress=bar.update)["trs_balanced"]
    t_util = time.perf_counter()
    summary = summarize(runs, names)
    utility: dict[str, Any] = dict(summary)
    if "trs_balanced" in summary and "trtr_balanced" in summary:
        utility["gain_over_oversampling"] = {
            m: summary["trs_balanced"][m]["mean"] - summary["trtr_balanced"][m]["mean"]
            for m in ("accuracy", "balanced_accuracy", "auroc_macro")}
    metrics: dict[str, Any] = {
        "n": {"synthetic": len(syn.labels), "real_train": len(real.labels), "real_test": len(test_l.labels),
              "synthetic_per_class": {c: int((syn.labels == i).sum()) for i, c in enumerate(names)}},
        "fidelity": fidelity, "diversity": diversity, "utility": utility,
        "feature_extractor": {"key": extractor.key, "dim": extractor.dim},
        "seeds": len(seeds), "steps": recipe.steps, "symmetries": list(symmetries),
        "bf16": recipe.bf16,  # what ran: evaluate.classifier.bf16=auto resolves per CPU (synthgen/precision.py)
    }
    if rare:
        metrics["rare"] = {"classes": rare, **rare_gain(summary, rare, runs, names),
                           "synthetic_images": {"boost_plan": len(boosted.labels),
                                                **({"raw_synthetic": len(raw.labels)} if raw is not None else {})}}
    reports = Path(ecfg.reports)
    per_class_recall_png(reports / PER_CLASS_PNG, summary, names, rare)
    confusion_png(reports / CONFUSION_PNG, {a: sum(s["confusion"] for s in runs[a]) for a in runs}, names)
    log.info("evaluate: features %.1fs, fidelity+diversity %.1fs, utility %.1fs (%d arms x %d seeds), total %.1fs",
             t_fe - t0, t_fid - t_fe, t_util - t_fid, len(arms), len(seeds), time.perf_counter() - t0)
    return _clean(metrics)


def run(cfg: DictConfig) -> Path:
    """Run the stage and write ``evaluate.output``; returns its path."""
    metrics = evaluate(cfg)
    out = Path(cfg.evaluate.output)
    write_json(out, metrics)
    return out


__all__ = ["evaluate", "run"]
