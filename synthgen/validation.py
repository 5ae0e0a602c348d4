"""Validate a composed configuration before any stage does work: one :class:`ConfigError` per problem.

The schema has two sources:

* the YAML defaults in ``conf/`` (the single source of defaults): the composition of ``conf/`` with the same
  group choices (``data=medmnist``, ``model=cgan``, ``trainer=ddp`` ...) gives every allowed key, and each
  default's type (int, float, bool, string, list of ..., mapping) is the expected type;
* :mod:`synthgen.config_rules`: what YAML cannot say (keys whose default is null, ranges, choices, formats,
  free-form maps such as ``generate.counts``). A rule there replaces the inferred type of its key.

Ints are accepted where floats are expected; bools are never ints. A value still ``???`` (mandatory, not
set, e.g. ``data.path`` of a source the stage does not read) is left to the stage that needs it.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from .errors import ConfigError

MISSING = "???"


# ------------------------------------------------------------------------------------------------ rules
class Rule:
    """One key's expectation: :meth:`ok` tests a plain value, :meth:`describe` says it in words."""

    null = False

    def ok(self, v: Any) -> bool:
        return (v is None and self.null) or (v is not None and self._ok(v))

    def _ok(self, v: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        if not self.null:
            return self._describe()
        return self._describe() + " or null" + (f" ({self.null})" if isinstance(self.null, str) else "")

    def _describe(self) -> str:
        raise NotImplementedError


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _bounds(ge, gt, le, lt) -> str:
    if (ge is not None or gt is not None) and (le is not None or lt is not None):
        lo = f"[{ge}" if ge is not None else f"({gt}"
        hi = f"{le}]" if le is not None else f"{lt})"
        return f" in {lo}, {hi}"
    parts = [f">= {ge}" if ge is not None else "", f"> {gt}" if gt is not None else "",
             f"<= {le}" if le is not None else "", f"< {lt}" if lt is not None else ""]
    return "".join(f" {p}" for p in parts if p)


def _in(v: Any, ge, gt, le, lt) -> bool:
    return ((ge is None or v >= ge) and (gt is None or v > gt) and (le is None or v <= le)
            and (lt is None or v < lt))


class Int(Rule):
    """An integer (not a bool) with optional bounds or a closed set of values."""

    def __init__(self, ge=None, gt=None, le=None, lt=None, choices: Sequence[int] = (), null=False, note=""):
        self.ge, self.gt, self.le, self.lt, self.choices, self.null, self.note = ge, gt, le, lt, tuple(choices), null, note

    def _ok(self, v):
        return _is_int(v) and (v in self.choices if self.choices else _in(v, self.ge, self.gt, self.le, self.lt))

    def _describe(self):
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices)) + self.note
        return "an integer" + _bounds(self.ge, self.gt, self.le, self.lt) + self.note


class Num(Rule):
    """A finite number (an int is fine, a bool is not) with optional bounds."""

    def __init__(self, ge=None, gt=None, le=None, lt=None, null=False, note=""):
        self.ge, self.gt, self.le, self.lt, self.null, self.note = ge, gt, le, lt, null, note

    def _ok(self, v):
        return _is_num(v) and _in(v, self.ge, self.gt, self.le, self.lt)

    def _describe(self):
        return "a number" + _bounds(self.ge, self.gt, self.le, self.lt) + self.note


class Bool(Rule):
    def __init__(self, null=False):
        self.null = null

    def _ok(self, v):
        return isinstance(v, bool)

    def _describe(self):
        return "true or false"


class Str(Rule):
    """A string, optionally one of ``choices`` or matching ``pattern`` (described by ``what``)."""

    def __init__(self, choices: Sequence[str] = (), pattern: str | None = None, what: str = "", null=False,
                 nonempty=False):
        self.choices, self.null, self.what, self.nonempty = tuple(choices), null, what, nonempty
        self.pattern = re.compile(pattern) if pattern else None

    def _ok(self, v):
        if not isinstance(v, str) or (self.nonempty and not v):
            return False
        if self.choices:
            return v in self.choices
        return self.pattern is None or bool(self.pattern.fullmatch(v))

    def _describe(self):
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        return self.what or ("a non-empty string" if self.nonempty else "a string")


class ListOf(Rule):
    """A list whose items all pass ``item`` (optionally of a fixed length / at least ``min_len``)."""

    def __init__(self, item: Rule | None, length: int | None = None, min_len: int = 0, unique=False, null=False):
        self.item, self.length, self.min_len, self.unique, self.null = item, length, min_len, unique, null

    def _ok(self, v):
        if not isinstance(v, list) or (self.length is not None and len(v) != self.length) or len(v) < self.min_len:
            return False
        if self.unique and len({repr(x) for x in v}) != len(v):
            return False
        return self.item is None or all(self.item.ok(x) for x in v)

    def _describe(self):
        size = (f" of {self.length}" if self.length is not None
                else f" of at least {self.min_len}" if self.min_len else "")
        what = f" ({self.item.describe()} each)" if self.item is not None else ""
        return f"a list{size}{' distinct' if self.unique else ''}{what}"


class MapOf(Rule):
    """A free-form mapping ``name -> value`` (names are strings; values pass ``value``)."""

    def __init__(self, value: Rule, what: str = "name", null=False):
        self.value, self.what, self.null = value, what, null

    def _ok(self, v):
        return isinstance(v, dict) and all(isinstance(k, str) and self.value.ok(x) for k, x in v.items())

    def _describe(self):
        return f"a mapping {self.what} -> {self.value.describe()}"


class AnyOf(Rule):
    """Passes when one of ``rules`` passes."""

    def __init__(self, *rules: Rule, null=False, what: str = ""):
        self.rules, self.null, self.what = rules, null, what

    def _ok(self, v):
        return any(r.ok(v) for r in self.rules)

    def _describe(self):
        if self.what:
            return self.what
        return ", ".join(r.describe() for r in self.rules[:-1]) + " or " + self.rules[-1].describe()


class Open(Rule):
    """A mapping whose known keys follow the YAML defaults and the table and which also takes other keys
    (each checked with ``extra``): e.g. ``generate.sampling``, passed on to a model that picks its keys."""

    def __init__(self, extra: Rule | None, what: str):
        self.extra, self.what = extra, what

    def _ok(self, v):
        return isinstance(v, dict)

    def _describe(self):
        return f"a mapping ({self.what})"


def infer(default: Any) -> Rule | None:
    """The rule a YAML default implies: its type (lists: of its first item's type); None for null."""
    if isinstance(default, bool):
        return Bool()
    if _is_int(default):
        return Int()
    if isinstance(default, float):
        return Num()
    if isinstance(default, str):
        return Str()
    if isinstance(default, list):
        return ListOf(infer(default[0]) if default else None)
    return None


# ----------------------------------------------------------------------------------------- the tree walk
def _rule_for(key: str, rules: Mapping[str, Rule]) -> Rule | None:
    if key in rules:
        return rules[key]
    for pattern, rule in rules.items():
        if "*" in pattern and fnmatch.fnmatchcase(key, pattern):
            return rule
    return None


def _got(v: Any) -> str:
    text = repr(v)
    text = text if len(text) <= 60 else text[:57] + "..."
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            return text
        return f"{text} (a string: drop the quotes)"
    return text


def _hint(rule: Rule, v: Any) -> str:
    if isinstance(rule, Str) and isinstance(v, (int, float)) and not isinstance(v, bool):
        return " (a number here: quote it, e.g. key='...')"
    return ""


def _unknown(key: str, known: Sequence[str]) -> str:
    name = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    if close:
        return f"unknown key; did you mean {parent + '.' if parent else ''}{close[0]}?"
    shown = ", ".join(sorted(known)[:12]) + (", ..." if len(known) > 12 else "")
    return f"unknown key; {parent or 'the config'} has: {shown}"


def _accepted_by_target(target: Any, name: str) -> bool:
    """Whether the callable named by ``_target_`` takes a keyword ``name`` (imported only when asked)."""
    import importlib

    if not isinstance(target, str) or "." not in target:
        return False
    module, attr = target.rsplit(".", 1)
    try:
        fn = getattr(importlib.import_module(module), attr)
        return name in inspect.signature(fn).parameters
    except Exception:  # not importable: the stage reports it; here the key is simply unknown
        return False


def check_tree(value: Any, ref: Any, key: str, rules: Mapping[str, Rule], errors: list[tuple[str, str]],
               extensible: Sequence[str] = ()) -> None:
    """Append ``(key, problem)`` for every difference of ``value`` from the reference ``ref`` and ``rules``."""
    if isinstance(value, str) and value == MISSING:
        return
    rule = _rule_for(key, rules) if key else None
    if isinstance(rule, Open) or (rule is None and isinstance(ref, dict)):
        if not isinstance(value, dict):
            errors.append((key, f"expected a mapping (keys {', '.join(sorted(ref)) or 'of your choice'}), "
                                f"got {_got(value)}"))
            return
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if k in ref:
                check_tree(v, ref[k], sub, rules, errors, extensible)
            elif isinstance(rule, Open):
                if rule.extra is not None and not rule.extra.ok(v):
                    errors.append((sub, f"expected {rule.extra.describe()}, got {_got(v)}"))
            elif not (key in extensible and _accepted_by_target(value.get("_target_"), str(k))):
                errors.append((sub, _unknown(sub, [str(r) for r in ref])))
        for k in ref:
            if k not in value and not isinstance(rule, Open):
                errors.append((f"{key}.{k}" if key else str(k), f"missing (the default in conf/ is {ref[k]!r})"))
        return
    if rule is None:
        rule = infer(ref)
    if rule is not None and not rule.ok(value):
        errors.append((key, f"expected {rule.describe()}, got {_got(value)}{_hint(rule, value)}"))


def raise_first(errors: Sequence[tuple[str, str]]) -> None:
    """Raise the first problem as a one-line :class:`ConfigError` (saying how many more there are).

    The shallowest key goes first: a bad ``seed`` also breaks every ``${seed}`` below it, and the key
    the user set is the one to name.
    """
    if errors:
        key, problem = sorted(errors, key=lambda e: e[0].count("."))[0]
        more = f" (and {len(errors) - 1} more config problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise ConfigError(key, problem + more)


def validate_tree(cfg: Mapping[str, Any], reference: Mapping[str, Any], rules: Mapping[str, Rule] | None = None,
                  extensible: Sequence[str] | None = None) -> None:
    """Check the plain (resolved) config ``cfg`` against ``reference`` and ``rules``; raise the first problem."""
    from . import config_rules

    rules = config_rules.RULES if rules is None else rules
    extensible = config_rules.EXTENSIBLE if extensible is None else extensible
    errors: list[tuple[str, str]] = []
    check_tree(dict(cfg), dict(reference), "", rules, errors, extensible)
    if not errors:
        errors = config_rules.cross_checks(cfg)
    raise_first(errors)


# ------------------------------------------------------------------------------ the reference composition
def _group_options(group_dir: Path) -> list[str]:
    return sorted(p.stem for p in group_dir.glob("*.yaml") if not p.stem.startswith("_"))


def _option_summary(group_dir: Path, name: str, seen: frozenset = frozenset()) -> tuple[set, Any]:
    """Top-level keys and ``_target_`` of option ``name`` with its in-group defaults (``_common``, ``gpu``)."""
    node = yaml.safe_load((group_dir / f"{name}.yaml").read_text(encoding="utf-8")) or {}
    keys: set = set()
    target = None
    own = {k: v for k, v in node.items() if k != "defaults"}
    defaults = node.get("defaults") or []
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    for d in defaults:
        if d == "_self_":
            keys |= set(own)
            target = own.get("_target_", target)
        elif isinstance(d, str) and "/" not in d and "@" not in d and d not in seen \
                and (group_dir / f"{d}.yaml").exists():
            k, t = _option_summary(group_dir, d, seen | {name})
            keys |= k
            target = t if t is not None else target
    return keys, target


def _default_choices(conf_dir: Path, config_name: str) -> dict[str, str]:
    node = yaml.safe_load((conf_dir / f"{config_name}.yaml").read_text(encoding="utf-8")) or {}
    out = {}
    for d in node.get("defaults") or []:
        if isinstance(d, dict):
            for g, o in d.items():
                if isinstance(g, str) and isinstance(o, str):
                    out[g] = o
    return out


def infer_choices(cfg: Mapping[str, Any], conf_dir: Path, config_name: str = "config") -> dict[str, str]:
    """The option of each config group with several options that ``cfg`` was composed from: the option its
    ``name`` names first (``data.name``, ``model.name``, ``budget.name``: a ``_global_`` budget's own block), then
    the same ``_target_``, then the fewest top-level keys of difference, then the default."""
    defaults = _default_choices(conf_dir, config_name)
    choices = {}
    for group_dir in sorted(p for p in conf_dir.iterdir() if p.is_dir()):
        group, options = group_dir.name, _group_options(group_dir)
        node = cfg.get(group)
        if len(options) < 2 or not isinstance(node, Mapping):
            continue

        def score(opt: str) -> tuple:
            keys, target = _option_summary(group_dir, opt)
            return (node.get("name") == opt, target == node.get("_target_"), -len(keys ^ set(node)),
                    opt == defaults.get(group))

        choices[group] = max(options, key=score)
    return choices


@functools.lru_cache(maxsize=16)
def _reference(conf_dir: str, config_name: str, choices: tuple[tuple[str, str], ...]) -> dict:
    from omegaconf import OmegaConf

    from .config import compose

    cfg = compose([f"{g}={o}" for g, o in choices], config_dir=conf_dir, config_name=config_name, validate=False)
    return OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)


def reference_config(cfg: Mapping[str, Any], conf_dir: str | os.PathLike, config_name: str = "config") -> dict:
    """``conf/`` composed with the group options ``cfg`` was composed from, no value overrides (cached)."""
    conf_dir = Path(conf_dir)
    choices = tuple(sorted(infer_choices(cfg, conf_dir, config_name).items()))
    return _reference(str(conf_dir), config_name, choices)


def validate_config(cfg: Mapping[str, Any], conf_dir: str | os.PathLike, config_name: str = "config") -> None:
    """Raise :class:`ConfigError` (one line, the key named) for the first problem of the resolved ``cfg``."""
    validate_tree(cfg, reference_config(cfg, conf_dir, config_name))
