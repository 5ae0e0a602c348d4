"""The ``curate.plan`` settings of the boost plan (:mod:`synthgen.curation.plan`), checked, and its rule text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import ConfigError

RULE = ("ship the setting with the largest mean validation-{metric} gain over oversampling among those whose "
        "paired {pct}% t-interval of the gain lies above zero and whose validation {bacc} is not "
        "worse (mean difference >= -{tol:g} and its paired {pct}% t-interval not below zero); otherwise ship "
        "none of the class")
_KEY = "curate.plan"
#: Decision metrics: the class's validation recall (hard argmax decisions) or its soft recall, the mean
#: predicted probability of the class over its validation images (continuous, so less seed noise); the
#: balanced-accuracy condition uses the matching mean over classes. Both are always recorded.
METRICS = {"recall": ("recall_gain", "balanced_accuracy_gain", "recall"),
           "soft_recall": ("soft_recall_gain", "soft_balanced_accuracy_gain", "soft recall (mean p(class))")}


@dataclass(frozen=True)
class PlanConfig:
    """The checked ``curate.plan`` block (see ``conf/curate/default.yaml``)."""

    enabled: bool
    amounts: tuple[float, ...]
    shares: tuple[float, ...]
    guidance: float | None
    seeds: tuple[int, ...]
    steps: int | None
    batch_size: int | None
    confidence: float
    max_balanced_accuracy_loss: float = 0.0
    pretrain_steps: int = 0
    metric: str = "recall"

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "PlanConfig":
        """Check the block; a bad value raises :class:`ConfigError` naming ``curate.plan.<key>``."""
        def nums(key: str, lo_open: float, hi: float | None) -> tuple[float, ...]:
            v = cfg.get(key)
            if not isinstance(v, Sequence) or isinstance(v, str) or len(v) == 0:
                raise ConfigError(f"{_KEY}.{key}", f"a non-empty list of numbers, got {v!r}")
            out = []
            for x in v:
                if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) \
                        or x <= lo_open or (hi is not None and x > hi):
                    rng = f"in ({lo_open:g}, {hi:g}]" if hi is not None else f"> {lo_open:g}"
                    raise ConfigError(f"{_KEY}.{key}", f"every value must be a number {rng}, got {x!r}")
                out.append(float(x))
            if len(set(out)) != len(out):
                raise ConfigError(f"{_KEY}.{key}", f"values must be unique, got {list(v)}")
            return tuple(out)

        seeds = cfg.get("seeds")
        if not isinstance(seeds, Sequence) or isinstance(seeds, str) or len(seeds) < 2 \
                or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ConfigError(f"{_KEY}.seeds", "at least 2 unique seeds >= 0 are needed for a paired confidence "
                              f"interval (5 or more recommended), got {seeds!r}")
        conf = cfg.get("confidence", 0.95)
        if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0 < conf < 1:
            raise ConfigError(f"{_KEY}.confidence", f"a number in (0, 1), got {conf!r}")
        metric = cfg.get("metric", "recall")
        if metric not in METRICS:
            raise ConfigError(f"{_KEY}.metric", f"one of {list(METRICS)}, got {metric!r}")
        tol = cfg.get("max_balanced_accuracy_loss", 0.0)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
            raise ConfigError(f"{_KEY}.max_balanced_accuracy_loss", f"a number in [0, 1), got {tol!r}")
        opt: dict[str, int | None] = {}
        for key, lo in (("steps", 1), ("batch_size", 1), ("pretrain_steps", 0)):
            v = cfg.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
                raise ConfigError(f"{_KEY}.{key}", f"an integer >= {lo} or null, got {v!r}")
            opt[key] = v
        g = cfg.get("guidance")
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g)):
            raise ConfigError(f"{_KEY}.guidance", f"a number or null, got {g!r}")
        return cls(enabled=bool(cfg.get("enabled", True)), amounts=nums("amounts", 0.0, None),
                   shares=nums("shares", 0.0, 1.0), guidance=None if g is None else float(g),
                   seeds=tuple(int(s) for s in seeds), steps=opt["steps"], batch_size=opt["batch_size"],
                   confidence=float(conf), max_balanced_accuracy_loss=float(tol),
                   pretrain_steps=int(opt["pretrain_steps"] or 0), metric=str(metric))


__all__ = ["METRICS", "RULE", "PlanConfig"]
