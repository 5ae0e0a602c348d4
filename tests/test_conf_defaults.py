"""The YAML in conf/ is the only source of defaults for the objects it instantiates.

For every config group option whose ``_target_`` is a synthgen class (``conf/model/*.yaml``,
``conf/data/*.yaml``), the keys the stage passes to the constructor must cover every constructor parameter,
so no constructor default is ever used silently by the pipeline; a parameter that keeps a default (for
direct use in code and tests) must have the YAML's value. Building the objects from the composed config then
gives exactly what the YAML says (the models' recorded hyperparameters).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from synthgen.config import compose, conf_dir
from synthgen.stages.autoencoder import AE_STAGE_KEYS
from synthgen.stages.prepare import _STAGE_KEYS as DATA_STAGE_KEYS
from synthgen.stages.train import MODEL_STAGE_KEYS, build_model, model_kwargs, sized_model_config

#: what the stage itself passes to the constructor (not from the YAML).
#: (``data.volume`` goes to the volume readers of ``data.dims=3``: synthgen.stages.prepare.build_reader.)
STAGE_ARGS = {"model": {"class_names", "image_shape"}, "data": {"volume"}, "autoencoder": {"image_shape"}}
#: the stage's own keys of each group (stripped before the constructor is called).
STAGE_KEYS = {"model": set(MODEL_STAGE_KEYS), "data": set(DATA_STAGE_KEYS), "autoencoder": set(AE_STAGE_KEYS)}
#: the default prepared image shape (data.image_size 28), which picks the model group's size preset.
DEFAULT_SHAPE = (1, 28, 28)
#: values for the keys a group leaves to the user (``???``), so the group composes.
REQUIRED = {"root": "/nonexistent", "path": "/nonexistent.npz"}


def _options() -> list[tuple[str, str]]:
    found = []
    for group in STAGE_ARGS:
        for f in sorted((conf_dir() / group).glob("*.yaml")):
            if f.name.startswith("_"):
                continue
            target = (yaml.safe_load(f.read_text()) or {}).get("_target_", "")
            if target.startswith("synthgen."):
                found.append((group, f.stem))
    return found


OPTIONS = _options()


def _composed(group: str, option: str) -> dict[str, Any]:
    raw = yaml.safe_load((conf_dir() / group / f"{option}.yaml").read_text())
    fill = [f"{group}.{k}={v}" for k, v in REQUIRED.items() if raw.get(k) == "???"]
    node = compose([f"{group}={option}", *fill])[group]
    return OmegaConf.to_container(node, resolve=True)


def _constructor_kwargs(group: str, cfg: dict[str, Any]) -> dict[str, Any]:
    if group == "model":  # null keys come from the size presets: the YAML's values at the default 28 px
        kwargs = model_kwargs(sized_model_config(cfg, DEFAULT_SHAPE))
    else:
        kwargs = {k: v for k, v in cfg.items() if k not in STAGE_KEYS[group]}
    kwargs.pop("_target_")
    return kwargs


def _target(cfg: dict[str, Any]) -> Any:
    module, _, name = cfg["_target_"].rpartition(".")
    return getattr(importlib.import_module(module), name)


def _plain(v: Any) -> Any:
    """Tuples as lists, so a ``(0.9, 0.99)`` default compares equal to the YAML's ``[0.9, 0.99]``."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def constructor_default_problems(group: str, cfg: dict[str, Any]) -> list[str]:
    """Every way the constructor of ``cfg['_target_']`` could use a default the YAML does not state."""
    params = inspect.signature(_target(cfg)).parameters
    kwargs = _constructor_kwargs(group, cfg)
    problems = []
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in kwargs:
        if key not in params and not takes_any:
            problems.append(f"{key}: set in the YAML but not a parameter of {cfg['_target_']}")
    for name, p in params.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in STAGE_ARGS[group]:
            continue
        if name in kwargs:
            if p.default is not p.empty and _plain(p.default) != _plain(kwargs[name]):
                problems.append(f"{name}: constructor default {p.default!r} contradicts the YAML's {kwargs[name]!r}")
        elif name in cfg and name in STAGE_KEYS[group]:  # the stage keeps the key; the default must agree
            if p.default is p.empty or _plain(p.default) != _plain(cfg[name]):
                problems.append(f"{name}: the stage never passes it; default {p.default!r} != YAML {cfg[name]!r}")
        else:
            problems.append(f"{name}: not set by the YAML, so the constructor default {p.default!r} is used silently")
    return problems


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_yaml_sets_every_constructor_parameter_and_no_default_contradicts_it(group, option):
    problems = constructor_default_problems(group, _composed(group, option))
    assert not problems, f"conf/{group}/{option}.yaml: " + "; ".join(problems)


def test_every_synthgen_target_is_checked():
    assert {("model", "cgan"), ("model", "ddpm"), ("data", "demo"), ("data", "dicom"), ("data", "medmnist"),
            ("data", "nifti"), ("data", "imagefolder"), ("autoencoder", "default")} <= set(OPTIONS)


@pytest.mark.parametrize("option", [o for g, o in OPTIONS if g == "model"])
def test_models_built_from_conf_record_the_yaml_values(option):
    cfg = _composed("model", option)
    model = build_model(cfg, ["a", "b", "c"], DEFAULT_SHAPE)
    expected = _constructor_kwargs("model", cfg)
    recorded = {k: _plain(model.hparams[k]) for k in expected}
    assert recorded == _plain(expected)
    assert model.class_names == ["a", "b", "c"]


def test_the_check_catches_a_contradicting_or_unstated_default(monkeypatch):
    import sys
    import types

    class Reader:
        def __init__(self, root: str, image_size: int = 32, workers: int | None = None):
            pass

    mod = types.ModuleType("synthgen_fake_reader")
    mod.Reader = Reader
    monkeypatch.setitem(sys.modules, "synthgen_fake_reader", mod)
    cfg = {"_target_": "synthgen_fake_reader.Reader", "name": "x", "root": "r", "image_size": 28, "extra": 1}
    problems = constructor_default_problems("data", cfg)
    assert any(p.startswith("image_size: constructor default 32 contradicts") for p in problems), problems
    assert any(p.startswith("workers: not set by the YAML") for p in problems), problems
    assert any(p.startswith("extra: set in the YAML but not a parameter") for p in problems), problems
    assert constructor_default_problems("data", {**cfg, "image_size": 32, "workers": None, "extra": None}) == [
        "extra: set in the YAML but not a parameter of synthgen_fake_reader.Reader"]
