"""The generation plan: which (label, seed) pairs a cohort holds, decided before any model runs.

Counts per class come from the ``generate`` config:

* ``counts`` (class name -> n) for the classes it names;
* every other class gets ``per_class``, or with ``balance_to: N`` ``max(0, N - real_c)`` where ``real_c`` is
  the number of real training images of class ``c`` (top each class up to N).

Seeds: sample ``k`` (0-based, within its class) of class ``c`` gets
``seed = (generate.seed << 32) | (c << 24) | k``. Raising one class's count appends samples to that class
and leaves every other sample (and its seed) unchanged. Rows are ordered by class, then ``k``.
Limits that keep ``seeded_noise``'s generator seed inside 64 bits: ``generate.seed < 4096``,
fewer than 256 classes, fewer than 2**24 samples per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError

SEED_BITS, CLASS_BITS, INDEX_BITS = 12, 8, 24


@dataclass(frozen=True)
class Plan:
    """``labels`` ``(N,)`` int64 and ``seeds`` ``(N,)`` int64 in cohort order; ``counts`` per class name."""

    labels: np.ndarray
    seeds: np.ndarray
    counts: dict[str, int]

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
        if int(value) >= 1 << INDEX_BITS:
            raise ConfigError(key, f"at most {(1 << INDEX_BITS) - 1} samples per class")
        out[n] = int(value)
    return out


def build_plan(gen_cfg: Mapping[str, Any], class_names: Sequence[str],
               real_counts: Mapping[str, int] | None = None) -> Plan:
    """The deterministic ``(label, seed)`` list for a ``generate`` config (see the module docstring)."""
    base = int(gen_cfg.get("seed", 0))
    if not 0 <= base < 1 << SEED_BITS:
        raise ConfigError("generate.seed", f"must be in [0, {1 << SEED_BITS}), got {base}")
    if len(class_names) > 1 << CLASS_BITS:
        raise ConfigError("data.classes", f"at most {1 << CLASS_BITS} classes, got {len(class_names)}")
    counts = class_counts_from_config(gen_cfg, class_names, real_counts)
    labels, seeds = [], []
    for c, name in enumerate(class_names):
        n = counts[str(name)]
        labels.append(np.full(n, c, dtype=np.int64))
        seeds.append(sample_seed(base, c, np.arange(n, dtype=np.int64)))
    return Plan(labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
                seeds=np.concatenate(seeds) if seeds else np.zeros(0, np.int64), counts=counts)
