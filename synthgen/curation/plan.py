"""The boost plan: how many synthetic images of each boosted class to ship, chosen on the validation split.

For every class in ``curate.classes`` the plan compares, on the real **validation** split (never test), the
honest baseline -- real training images with class-balanced oversampling, the evaluate stage's
``trtr_balanced`` arm, same classifier recipe and augmentation -- against real oversampled + the first ``n``
curated candidates of the class (best score first) at one guidance scale, where inside the class a share
``s`` of its sampling mass goes to the synthetic images (the ``trs_balanced`` recipe).
``n = ceil(amount * n_real_train(class))`` for ``amount`` in ``curate.plan.amounts`` (capped at the
candidates available).

Search (coordinate, to fit the cost budget): every amount at the first share and the first guidance; then the
other shares at each class's best amount; then the other guidance values at its best amount and share.
Several boosted classes share each classifier run (each gets its own setting in it; each class's verdict
reads its own recall). A run is skipped when its settings equal an earlier run's.

Statistics: every run trains ``len(seeds)`` classifiers; seed ``i`` of a setting and seed ``i`` of the
baseline share the weight init, so the differences are paired per seed. Gain = the class's validation
recall minus the baseline's; its mean and a two-sided Student t interval (``confidence``, default 95%) over
the seeds. Rule (:data:`RULE`): a setting qualifies when the gain's interval lies above zero AND the
validation balanced accuracy is not worse: its mean paired difference is >= ``-max_balanced_accuracy_loss``
(default 0) and that difference's interval does not lie below zero. The second condition stops images that
buy the class's recall with other classes' recall (e.g. images of another class labelled as this one,
which raise this class's recall by making the classifier say it more often). The plan ships the qualifying
setting with the largest mean gain (ties: fewer images), else nothing for that class.

``curate.plan.metric: soft_recall`` replaces recall and balanced accuracy by their soft forms (mean predicted
probability of the class over its validation images; mean over classes), which are continuous and so less noisy;
both forms are recorded for every trial. ``curate.plan.pretrain_steps`` > 0 starts the baseline and every
setting of seed ``i`` from one model pretrained on the baseline pool (warm start).

Cost: ``(1 + settings tried) * len(seeds)`` classifier runs of ``curate.plan.steps`` steps each (the
evaluate recipe's steps when null); settings tried <= ``len(amounts) + len(shares) - 1 + guidance values - 1``.

Determinism: candidates, seeds and recipe fix every run; same inputs -> the same plan and the same
``to_json()`` except ``wall_s``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..metrics.classifier import Recipe, class_balanced_weights, predict_proba, train_classifier
from ..metrics.utility import LabeledImages, paired_interval, score
from .plan_config import METRICS, RULE, PlanConfig

log = logging.getLogger(__name__)


@dataclass
class ClassPlan:
    """The verdict for one boosted class; ``chosen`` is the shipped trial (None = none shipped)."""

    name: str
    n_real_train: int
    n_val: int
    n_candidates: dict[str, int]
    trials: list[dict[str, Any]] = field(default_factory=list)
    chosen: dict[str, Any] | None = None
    reason: str = ""
    selected: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    metric: str = "recall"
    #: the oversampling baseline's mean validation ``metric`` of the class (a reader of "no gain" needs to
    #: know whether there was anything left to gain: PneumoniaMNIST's val `normal` recall is 0.97)
    baseline: float | None = None

    def line(self, pct: int) -> str:
        """One sentence for the card and the log."""
        gk, _, what = METRICS[self.metric]
        if self.chosen is not None:
            g, c = self.chosen[gk], self.chosen
            return (f"{self.name}: {g['mean']:+.3f} +- {g['half_width']:.3f} {what} on validation ({pct}% CI "
                    f"[{g['ci'][0]:.3f}, {g['ci'][1]:.3f}]), {c['n_images']} images at guidance "
                    f"{c['guidance']:g}, share {c['share']:g}")
        best = max(self.trials, key=lambda t: _rank(t, self.metric)) if self.trials else None
        if best is None:
            return f"{self.name}: {self.reason}, none shipped"
        g = best[gk]
        return (f"{self.name}: {self.reason} ({g['mean']:+.3f}, {pct}% CI [{g['ci'][0]:.3f}, {g['ci'][1]:.3f}] "
                f"for the best of {len(self.trials)} settings), none shipped")


def _rank(trial: Mapping[str, Any], metric: str = "recall") -> tuple[float, int]:
    return (trial[METRICS[metric][0]]["mean"], -trial["n_images"])


@dataclass
class BoostPlan:
    """What the plan decided: per-class verdicts, the baseline, and the candidate rows to ship."""

    classes: list[ClassPlan]
    baseline: dict[str, Any]
    config: PlanConfig
    recipe: dict[str, Any]
    runs: int
    wall_s: float

    def rule(self) -> str:
        """:data:`RULE` with this plan's confidence level and tolerance."""
        soft = self.config.metric == "soft_recall"
        return RULE.format(pct=round(100 * self.config.confidence), tol=self.config.max_balanced_accuracy_loss,
                           metric="soft-recall (mean p(class))" if soft else "recall",
                           bacc="soft balanced accuracy" if soft else "balanced accuracy")

    def selected_indices(self) -> np.ndarray:
        """Sorted ``(M,)`` int64 rows of the candidates to ship (every boosted class)."""
        parts = [c.selected for c in self.classes]
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    def summary_lines(self) -> list[str]:
        """One line per boosted class (the card's and the log's text)."""
        pct = round(100 * self.config.confidence)
        return [c.line(pct) for c in self.classes]

    def summary(self) -> dict[str, Any]:
        """The short form the curate stage puts into ``cohort.json`` (``curation.plan``); the card reads it."""
        out: dict[str, Any] = {"rule": self.rule(),
                               "seeds": list(self.config.seeds), "lines": self.summary_lines(), "classes": {}}
        for c in self.classes:
            ch = c.chosen
            out["classes"][c.name] = {
                "shipped": ch is not None, "n_images": ch["n_images"] if ch else 0,
                "guidance": ch["guidance"] if ch else None, "share": ch["share"] if ch else None,
                "metric": c.metric, "gain": ch[METRICS[c.metric][0]]["mean"] if ch else None,
                "ci": ch[METRICS[c.metric][0]]["ci"] if ch else None, "reason": c.reason}
        return _clean(out)

    def to_json(self) -> dict[str, Any]:
        """``metrics/boost.json``: per class every setting tried with its gains and intervals, the verdict,
        images, guidance and share; the baseline figures; seeds, recipe, run count and wall time."""
        classes = {}
        for c in self.classes:
            ch = c.chosen
            classes[c.name] = {
                "verdict": "ship" if ch else "none", "reason": c.reason, "n_real_train": c.n_real_train,
                "n_val": c.n_val, "n_candidates": c.n_candidates, "n_images": ch["n_images"] if ch else 0,
                "guidance": ch["guidance"] if ch else None, "share": ch["share"] if ch else None,
                "amount": ch["amount"] if ch else None, "chosen": ch, "trials": c.trials}
        cfg = self.config
        return _clean({
            "rule": self.rule(), "metric": cfg.metric, "confidence": cfg.confidence,
            "max_balanced_accuracy_loss": cfg.max_balanced_accuracy_loss, "seeds": list(cfg.seeds),
            "amounts": list(cfg.amounts), "shares": list(cfg.shares), "classifier": self.recipe,
            "baseline": self.baseline, "classes": classes, "lines": self.summary_lines(),
            "n_selected": int(len(self.selected_indices())), "runs": self.runs, "wall_s": self.wall_s})


def _clean(obj: Any, digits: int = 6) -> Any:
    """Round floats (stable JSON), NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_clean(v, digits) for v in (obj.tolist() if isinstance(obj, np.ndarray) else obj)]
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return round(f, digits) if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _check_inputs(train: LabeledImages, val: LabeledImages, candidates: LabeledImages, guidance: np.ndarray,
                  classes: Sequence[str], class_names: Sequence[str]) -> list[int]:
    unknown = [c for c in classes if c not in class_names]
    if unknown or len(set(classes)) != len(classes):
        raise ConfigError("curate.classes", f"unknown or repeated class {unknown or list(classes)}; classes are "
                          f"{list(class_names)}")
    if len(guidance) != len(candidates.labels) or len(candidates.images) != len(candidates.labels):
        raise InputError(None, f"boost candidates: {len(candidates.images)} images, {len(candidates.labels)} "
                         f"labels and {len(guidance)} guidance values must match")
    idx = [list(class_names).index(c) for c in classes]
    for c, i in zip(classes, idx):
        if not (train.labels == i).any():
            raise InputError(None, f"boost plan: class {c!r} has no real training image; the plan's amounts are "
                             "multiples of the real count")
        if not (val.labels == i).any():
            raise InputError(None, f"boost plan: class {c!r} has no validation image, so its recall cannot be "
                             "measured")
    return idx


def choose_boost_plan(train: LabeledImages, val: LabeledImages, candidates: LabeledImages,
                      candidate_guidance: np.ndarray, classes: list[str], class_names: list[str],
                      plan_cfg: Mapping[str, Any], recipe: Recipe, seed: int = 0, progress: Any = None) -> BoostPlan:
    """Choose, per boosted class, how many candidates to ship (see the module docstring for the rule).

    Args:
        train: the real training split, ``(N, C, H, W)`` float32 in ``[0, 1]``.
        val: the real validation split (the only split the plan scores on).
        candidates: the filter-kept boost candidates, each class's rows ordered best first.
        candidate_guidance: ``(len(candidates),)`` guidance scale of each candidate.
        classes: the boosted class names (``curate.classes``); class_names: all names in label order.
        plan_cfg: the ``curate.plan`` block. recipe: the evaluate classifier recipe (``steps``/``batch_size``
            replaced by the plan's where set).
        seed: added to every classifier seed (``curate.plan.seeds``), so a different pipeline seed gives
            other, equally valid draws.
        progress: optional ``progress(n_steps)`` callable.

    Returns:
        The :class:`BoostPlan`; ``selected_indices()`` are rows of ``candidates``.
    """
    t0 = time.perf_counter()
    cfg = PlanConfig.from_mapping(plan_cfg)
    guidance = np.round(np.asarray(candidate_guidance, dtype=np.float64), 6)
    idx = _check_inputs(train, val, candidates, guidance, classes, class_names)
    rec = Recipe(**{**recipe.to_dict(), **{k: v for k, v in (("steps", cfg.steps), ("batch_size", cfg.batch_size))
                                            if v is not None}})
    n_classes = len(class_names)
    n_real = np.bincount(train.labels, minlength=n_classes)
    n_val = np.bincount(val.labels, minlength=n_classes)
    seeds = [int(seed) + s for s in cfg.seeds]
    rows = {i: {float(g): np.flatnonzero((candidates.labels == i) & (guidance == g))
                for g in sorted(set(guidance[candidates.labels == i].tolist()))} for i in idx}

    # Warm start: one model per seed pretrained on the baseline pool, shared by the baseline and every setting.
    pre: dict[int, Any] = {}
    if cfg.pretrain_steps:
        pre_rec = Recipe(**{**rec.to_dict(), "steps": cfg.pretrain_steps})
        w0 = class_balanced_weights(train.labels, n_classes)
        pre = {s: train_classifier(train.images, train.labels, w0, n_classes, pre_rec, s, progress).state_dict()
               for s in seeds}

    def run(pool_x: torch.Tensor, pool_y: np.ndarray, w: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for s in seeds:
            model = train_classifier(pool_x, pool_y, w, n_classes, rec, s, progress, init_state=pre.get(s))
            probs = predict_proba(model, val.images, rec.bf16)
            sc = score(probs, val.labels, n_classes)
            soft = [float(probs[val.labels == c, c].mean()) if (val.labels == c).any() else np.nan
                    for c in range(n_classes)]
            sc.update(soft_recall=soft, soft_balanced_accuracy=float(np.nanmean(soft)))
            out.append(sc)
        return out

    base = run(train.images, train.labels, class_balanced_weights(train.labels, n_classes))
    base_rec = {k: np.array([b[k] for b in base]) for k in ("recall", "soft_recall")}
    base_bacc = {k: np.array([b[k] for b in base]) for k in ("balanced_accuracy", "soft_balanced_accuracy")}
    plans = {i: ClassPlan(class_names[i], int(n_real[i]), int(n_val[i]),
                          {f"{g:g}": len(r) for g, r in rows[i].items()}) for i in idx}
    cache: dict[tuple, list[dict[str, Any]]] = {}
    seen: dict[int, set] = {i: set() for i in idx}

    def n_for(i: int, amount: float, g: float) -> int:
        return min(int(math.ceil(amount * n_real[i] - 1e-9)), len(rows[i].get(g, ())))

    def trial_run(settings: dict[int, tuple[float, float, float]], stage: str) -> None:
        """``settings``: class -> (amount, share, guidance); runs (or reuses) one pool, records per class."""
        eff = {i: (n_for(i, a, g), s, g) for i, (a, s, g) in settings.items()}
        eff = {i: v for i, v in eff.items() if v[0] > 0}
        if not eff:
            return
        key = tuple(sorted(eff.items()))
        if key not in cache:
            sel = {i: rows[i][g][:n] for i, (n, _s, g) in eff.items()}
            syn = np.concatenate([sel[i] for i in sorted(sel)])
            x = torch.cat([train.images, candidates.images[torch.as_tensor(syn)]])
            y = np.concatenate([train.labels, candidates.labels[syn]])
            cache[key] = run(x, y, _weights(train.labels, candidates.labels[syn], n_classes,
                                            {i: eff[i][1] for i in eff}))
            gains = {i: np.mean([r["recall"][i] for r in cache[key]]) - base_rec["recall"][:, i].mean() for i in eff}
            log.info("boost plan: run %d (%s): %s", len(cache), stage, "; ".join(
                f"{class_names[i]} {n} images, share {s:g}, guidance {g:g}: recall {gains[i]:+.3f}"
                for i, (n, s, g) in sorted(eff.items())))
        res = cache[key]
        bacc = {k: paired_interval(np.array([r[k] for r in res]) - base_bacc[k], cfg.confidence)
                for k in base_bacc}
        for i, (n, s, g) in eff.items():
            if (n, s, g) in seen[i]:
                continue
            seen[i].add((n, s, g))
            gain = {k: np.array([r[k][i] for r in res]) - base_rec[k][:, i] for k in base_rec}
            plans[i].trials.append({"stage": stage, "amount": settings[i][0], "n_images": n, "share": s,
                                    "guidance": g, **{f"{k}_gain": paired_interval(v, cfg.confidence)
                                                      for k, v in gain.items()},
                                    **{f"{k}_gain": v for k, v in bacc.items()}})

    def best(i: int, **fixed: float) -> dict[str, Any]:
        t = [t for t in plans[i].trials if all(t[k] == v for k, v in fixed.items())] or plans[i].trials
        return max(t, key=lambda x: _rank(x, cfg.metric))

    active = [i for i in idx if rows[i]]
    g0 = {i: (cfg.guidance if cfg.guidance in rows[i] else min(rows[i])) for i in active}
    s0 = cfg.shares[0]
    for a in cfg.amounts:
        trial_run({i: (a, s0, g0[i]) for i in active}, "amount")
    active = [i for i in active if plans[i].trials]
    amt = {i: best(i)["amount"] for i in active}
    for s in cfg.shares[1:]:
        trial_run({i: (amt[i], s, g0[i]) for i in active}, "share")
    share = {i: best(i, amount=amt[i], guidance=g0[i])["share"] for i in active}
    for g in sorted(set().union(*[set(rows[i]) for i in active]) if active else ()):
        if any(g != g0[i] and g in rows[i] for i in active):
            trial_run({i: (amt[i], share[i], g if g in rows[i] else g0[i]) for i in active}, "guidance")
    for i in idx:
        plans[i].metric = cfg.metric
        plans[i].baseline = float(base_rec[cfg.metric][:, i].mean())
        _decide(plans[i], rows[i], cfg.max_balanced_accuracy_loss)
    baseline = {"arm": "trtr_balanced", **{k: _ms(v) for k, v in base_bacc.items()},
                "per_seed_balanced_accuracy": base_bacc["balanced_accuracy"],
                **{k: {class_names[i]: _ms(v[:, i]) for i in idx} for k, v in base_rec.items()}}
    plan = BoostPlan([plans[i] for i in idx], baseline, cfg, rec.to_dict(), 1 + len(cache), 0.0)
    plan.wall_s = round(time.perf_counter() - t0, 1)
    for line in plan.summary_lines():
        log.info("boost plan: %s", line)
    return plan


def _ms(v: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(v)), "std": float(np.std(v))}


def _decide(plan: ClassPlan, rows: Mapping[float, np.ndarray], tol: float) -> None:
    """Apply :data:`RULE` to the class's trials; set ``chosen``, ``reason`` and ``selected``."""
    if not plan.trials:
        plan.reason = "no candidates passed curation"
        return
    gk, bk, _ = METRICS[plan.metric]
    gain_ok = [t for t in plan.trials if t[gk]["ci"][0] > 0]
    ok = [t for t in gain_ok if t[bk]["ci"][1] >= 0 and t[bk]["mean"] >= -tol]
    if not ok:
        plan.reason = ("recall gain only where balanced accuracy drops on validation" if gain_ok
                       else "no gain on validation")
        if plan.baseline is not None:
            what = "soft recall" if plan.metric == "soft_recall" else "recall"
            plan.reason += (f", where oversampling alone reaches {what} {plan.baseline:.3f} on its "
                            f"{plan.n_val} images")
        return
    plan.chosen = max(ok, key=lambda t: _rank(t, plan.metric))
    plan.reason = "gain on validation"
    plan.selected = rows[plan.chosen["guidance"]][:plan.chosen["n_images"]].astype(np.int64)


def _weights(real_y: np.ndarray, syn_y: np.ndarray, n_classes: int, shares: Mapping[int, float]) -> np.ndarray:
    """Sampling weights of ``concat(real, synthetic)``: every class with real images gets the same mass (the
    oversampling baseline); inside boosted class ``c`` a share ``shares[c]`` of it goes to its synthetic
    images, uniformly."""
    nr = np.bincount(real_y, minlength=n_classes).astype(np.float64)
    ns = np.bincount(syn_y, minlength=n_classes).astype(np.float64)
    s = np.array([shares.get(c, 0.0) if ns[c] > 0 else 0.0 for c in range(n_classes)])
    w_real = np.where(nr > 0, (1.0 - s) / np.maximum(nr, 1), 0.0)
    w_syn = np.where(ns > 0, s / np.maximum(ns, 1), 0.0)
    return np.concatenate([w_real[real_y], w_syn[syn_y]])


def load_plan_inputs(prepared: str | os.PathLike) -> tuple[LabeledImages, LabeledImages, list[str]]:
    """The real ``train`` and ``val`` splits of a prepared folder as float ``[0, 1]`` images, and the class
    names. Reads nothing else: the test split stays unseen by the plan."""
    from ..data.prepared import load_meta, load_split

    out = []
    for split in ("train", "val"):
        s = load_split(prepared, split)
        out.append(LabeledImages(torch.from_numpy(np.ascontiguousarray(s.images, dtype=np.float32)),
                                 np.asarray(s.labels, dtype=np.int64)))
    return out[0], out[1], [str(c) for c in load_meta(prepared)["class_names"]]


__all__ = ["RULE", "BoostPlan", "ClassPlan", "PlanConfig", "choose_boost_plan", "load_plan_inputs",
           "paired_interval"]
