"""The generation plan: which (label, seed) pairs a cohort holds, decided before any model runs.

Counts per class come from the ``generate`` config:

* ``counts`` (class name -> n) for the classes it names;
* every other class gets ``per_class``, or with ``balance_to: N`` ``max(0, N - real_c)`` where ``real_c`` is
  the number of real training images of class ``c`` (top each class up to N).

Seeds: sample ``k`` (0-based, within its class) of class ``c`` gets
``seed = (generate.seed << 32) | (c << 24) | k``. Raising one class's count appends samples to that class
and leaves every other sample (and its seed) unchanged. Rows are ordered by class, then ``k``.
Limits that keep ``seeded_noise``'s generator seed inside 64 bits: ``generate.seed < 4096``,
fewer than 256 classes, fewer than 2**23 samples per class (the upper half of ``k`` is the candidates').

Guidance (per sample, ``Plan.guidance``): ``generate.sampling.guidance`` is one scale for every class or a
``{class name: scale}`` map (classes it does not name get 1.0, the plain conditional model). A model whose
``generate`` takes no guidance (the GAN) records 1.0 for every sample.

Boost candidates (issue 14, for the curate stage): for every class ``c`` in ``curate.classes`` and every
scale ``g_j`` (``j``-th entry) of ``curate.guidance``, ``ceil(curate.oversample * max(curate.plan.amounts) *
real_c)`` extra samples drawn at guidance ``g_j`` (one block only, at 1.0, for a model without guidance),
appended after the rows above (``Plan.candidate`` marks them). While the boost plan is on
(``curate.plan.enabled``), a boosted class gets no ordinary ``per_class``/``balance_to`` samples: what ships of it
is the plan's choice among its candidates (a ``counts`` entry naming it still draws, and ships, that many).
Candidate ``m`` of block ``j`` gets
``k = 2**23 | (j << 19) | m``: a seed range of its own, so adding, removing or resizing candidates never
changes another sample (limits: 16 guidance values, fewer than 2**19 candidates per class and value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError

SEED_BITS, CLASS_BITS, INDEX_BITS = 12, 8, 24
#: ``k`` bit that marks a boost candidate, and the bits of its guidance block / index within the block.
CANDIDATE_BIT, BLOCK_SHIFT, MAX_BLOCKS = 23, 19, 16
MAX_PER_CLASS = 1 << CANDIDATE_BIT


@dataclass(frozen=True)
class Plan:
    """The rows of a cohort, in cohort order.

    Attributes:
        labels: ``(N,)`` int64 class indices.
        seeds: ``(N,)`` int64 sample seeds (see the module docstring).
        counts: class name -> number of ordinary (non-candidate) samples.
        guidance: ``(N,)`` float32, the guidance scale each row is drawn with (``>= 0``; 1.0 for models
            without guidance); ``None`` = 1.0 everywhere.
        candidate: ``(N,)`` bool, True for boost candidates; ``None`` = none.
        candidates: class name -> number of boost candidates (all guidance values together).
    """

    labels: np.ndarray
    seeds: np.ndarray
    counts: dict[str, int]
    guidance: np.ndarray | None = None
    candidate: np.ndarray | None = None
    candidates: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.guidance is None:
            object.__setattr__(self, "guidance", np.ones(n, np.float32))
        if self.candidate is None:
            object.__setattr__(self, "candidate", np.zeros(n, bool))

    def __len__(self) -> int:
        return int(len(self.labels))


def sample_seed(base_seed: int, label: int, k: int | np.ndarray) -> np.ndarray:
    """``(base_seed << 32) | (label << 24) | k`` as int64."""
    return (np.int64(base_seed) << np.int64(32)) | (np.int64(label) << np.int64(INDEX_BITS)) | np.asarray(k, np.int64)


def class_counts_from_config(gen_cfg: Mapping[str, Any], class_names: Sequence[str],
                             real_counts: Mapping[str, int] | None = None) -> dict[str, int]:
    """Resolve ``per_class`` / ``counts`` / ``balance_to`` into ``{class name: n}`` (label order).

    Raises:
        ConfigError: an unknown class name in ``counts`` (naming it and the valid ones), a negative count,
            both or neither of ``per_class`` and ``balance_to`` for classes ``counts`` does not name, or
            ``balance_to`` without real counts.
    """
    names = [str(c) for c in class_names]
    explicit = {str(k): v for k, v in dict(gen_cfg.get("counts") or {}).items()}
    unknown = sorted(set(explicit) - set(names))
    if unknown:
        raise ConfigError("generate.counts", f"unknown class {', '.join(map(repr, unknown))}; "
                                             f"valid classes are {', '.join(names)}")
    per_class, balance_to = gen_cfg.get("per_class"), gen_cfg.get("balance_to")
    rest = [n for n in names if n not in explicit]
    if rest and per_class is not None and balance_to is not None:
        raise ConfigError("generate.per_class", "set either per_class or balance_to, not both (the other null)")
    if rest and per_class is None and balance_to is None:
        raise ConfigError("generate.per_class", f"no count for {rest}: set per_class, balance_to or counts")
    out: dict[str, int] = {}
    for n in names:
        if n in explicit:
            value, key = explicit[n], f"generate.counts.{n}"
        elif per_class is not None:
            value, key = per_class, "generate.per_class"
        else:
            if real_counts is None:
                raise ConfigError("generate.balance_to", "needs the real training counts (meta.json)")
            value, key = max(0, int(balance_to) - int(real_counts.get(n, 0))), "generate.balance_to"
        if int(value) != value or int(value) < 0:
            raise ConfigError(key, f"must be a non-negative integer, got {value!r}")
        if int(value) >= MAX_PER_CLASS:
            raise ConfigError(key, f"at most {MAX_PER_CLASS - 1} samples per class")
        out[n] = int(value)
    return out


def class_guidance(guidance: Any, class_names: Sequence[str]) -> dict[str, float]:
    """``generate.sampling.guidance`` (a number or a ``{class name: scale}`` map) -> ``{class name: scale}``.

    Classes a map does not name get 1.0. ``None`` means 1.0 for every class.

    Raises:
        ConfigError: an unknown class in the map (naming it and the valid ones), or a scale that is not a
            finite number ``>= 0``.
    """
    key = "generate.sampling.guidance"
    names = [str(c) for c in class_names]
    if guidance is None:
        per = {}
        default = 1.0
    elif isinstance(guidance, Mapping):
        per = {str(k): v for k, v in guidance.items()}
        unknown = sorted(set(per) - set(names))
        if unknown:
            raise ConfigError(key, f"unknown class {', '.join(map(repr, unknown))}; "
                                   f"valid classes are {', '.join(names)}")
        default = 1.0
    else:
        per, default = {}, guidance
    out = {}
    for n in names:
        v = per.get(n, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) or float(v) < 0:
            raise ConfigError(key if n not in per else f"{key}.{n}", f"must be a finite number >= 0, got {v!r}")
        out[n] = float(v)
    return out


def candidate_counts(curate_cfg: Mapping[str, Any] | None, class_names: Sequence[str],
                     real_counts: Mapping[str, int] | None) -> dict[str, int]:
    """Boost candidates per guidance value for each class of ``curate.classes``:
    ``ceil(oversample * max(plan.amounts) * real_c)`` (classes not boosted are absent).

    Raises:
        ConfigError: an unknown class in ``curate.classes``, ``oversample`` or an amount ``<= 0``, or a count
            above the candidate seed range.
    """
    cur = dict(curate_cfg or {})
    classes = [str(c) for c in (cur.get("classes") or [])]
    if not classes:
        return {}
    names = [str(c) for c in class_names]
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ConfigError("curate.classes", f"unknown class {', '.join(map(repr, unknown))}; "
                                            f"valid classes are {', '.join(names)}")
    k = float(cur.get("oversample", 1))
    amounts = [float(a) for a in ((cur.get("plan") or {}).get("amounts") or [1.0])]
    if not k > 0:
        raise ConfigError("curate.oversample", f"must be > 0, got {k!r}")
    if min(amounts) <= 0:
        raise ConfigError("curate.plan.amounts", f"every amount must be > 0, got {amounts}")
    if real_counts is None:
        raise ConfigError("curate.classes", "boost candidates need the real training counts (meta.json)")
    out = {}
    for c in classes:
        n = int(math.ceil(k * max(amounts) * int(real_counts.get(c, 0)) - 1e-9))
        if n >= 1 << BLOCK_SHIFT:
            raise ConfigError("curate.oversample", f"{n} candidates of class {c!r} per guidance value; at most "
                                                   f"{(1 << BLOCK_SHIFT) - 1}")
        out[c] = n
    return out


def candidate_guidance(curate_cfg: Mapping[str, Any] | None, uses_guidance: bool) -> list[float]:
    """The guidance values boost candidates are drawn at: ``curate.guidance``, or ``[1.0]`` for a model
    without guidance.

    Raises:
        ConfigError: an empty list, more than 16 values, a repeated value or one that is not finite ``>= 0``.
    """
    if not uses_guidance:
        return [1.0]
    values = list((curate_cfg or {}).get("guidance") or [])
    if not values or len(values) > MAX_BLOCKS:
        raise ConfigError("curate.guidance", f"needs 1 to {MAX_BLOCKS} guidance values, got {values}")
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))
           or not math.isfinite(float(v)) or float(v) < 0]
    if bad or len(set(map(float, values))) != len(values):
        raise ConfigError("curate.guidance", f"needs distinct finite numbers >= 0, got {values}")
    return [float(v) for v in values]


def build_plan(gen_cfg: Mapping[str, Any], class_names: Sequence[str],
               real_counts: Mapping[str, int] | None = None, curate_cfg: Mapping[str, Any] | None = None,
               uses_guidance: bool = True) -> Plan:
    """The deterministic rows for a ``generate`` config (see the module docstring).

    Args:
        gen_cfg: the ``generate`` config (counts, seed, ``sampling.guidance``).
        class_names: label order.
        real_counts: real training images per class (``balance_to`` and boost candidates need them).
        curate_cfg: the ``curate`` config (``classes``, ``oversample``, ``guidance``, ``plan.amounts``); None
            = no boost candidates.
        uses_guidance: whether the model's ``generate`` takes a guidance scale (False: 1.0 recorded).
    """
    base = int(gen_cfg.get("seed", 0))
    if not 0 <= base < 1 << SEED_BITS:
        raise ConfigError("generate.seed", f"must be in [0, {1 << SEED_BITS}), got {base}")
    if len(class_names) > 1 << CLASS_BITS:
        raise ConfigError("data.classes", f"at most {1 << CLASS_BITS} classes, got {len(class_names)}")
    counts = class_counts_from_config(gen_cfg, class_names, real_counts)
    scale = class_guidance((gen_cfg.get("sampling") or {}).get("guidance"), class_names)
    boost = candidate_counts(curate_cfg, class_names, real_counts)
    if boost and bool(((curate_cfg or {}).get("plan") or {}).get("enabled", True)):
        # The boost plan alone decides what ships of a boosted class; ordinary per_class/balance_to samples
        # would ship past it ("none shipped" in the card while 1500 shipped). An explicit counts entry stays.
        explicit = {str(k) for k in dict(gen_cfg.get("counts") or {})}
        counts = {n: (0 if n in boost and n not in explicit else v) for n, v in counts.items()}
    grid = candidate_guidance(curate_cfg, uses_guidance) if boost else []
    labels, seeds, guidance, cand = [], [], [], []

    def add(c: int, k: np.ndarray, g: float, is_candidate: bool) -> None:
        labels.append(np.full(len(k), c, dtype=np.int64))
        seeds.append(sample_seed(base, c, k))
        guidance.append(np.full(len(k), g if uses_guidance else 1.0, dtype=np.float32))
        cand.append(np.full(len(k), is_candidate))

    for c, name in enumerate(class_names):
        add(c, np.arange(counts[str(name)], dtype=np.int64), scale[str(name)], False)
    for c, name in enumerate(class_names):
        for j, g in enumerate(grid if str(name) in boost else []):
            m = np.arange(boost[str(name)], dtype=np.int64)
            add(c, (1 << CANDIDATE_BIT) | (j << BLOCK_SHIFT) | m, g, True)
    cat = (lambda parts, dt: np.concatenate(parts) if parts else np.zeros(0, dt))
    return Plan(labels=cat(labels, np.int64), seeds=cat(seeds, np.int64), counts=counts,
                guidance=cat(guidance, np.float32), candidate=cat(cand, bool),
                candidates={c: n * len(grid) for c, n in boost.items()})
