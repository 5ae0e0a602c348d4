"""Config validation (issue 13): every user error in the configuration is one line naming the key, exit 2,
before any stage reads data or builds a model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthgen.config import compose, load_config
from synthgen.config_rules import RULES
from synthgen.errors import ConfigError
from synthgen.validation import (MISSING, ListOf, MapOf, Open, _rule_for, infer, infer_choices, reference_config,
                                 validate_config)

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _one_line_error(r: subprocess.CompletedProcess, key: str, *needles: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith(f"error: config {key}:"), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# The list, each through the real entry point (a subprocess, exactly as a user types it).
STAGE_CASES = [
    ("generate", "generate.per_class=abc", "generate.per_class", "an integer", "'abc'"),
    ("prepare", "data.image_size=0", "data.image_size", ">= 1", "got 0"),
    ("train", "trainer.max_steps=abc", "trainer.max_steps", "an integer >= -1", "'abc'"),
    ("generate", "generate.perclass=10", "generate.perclass", "unknown key", "did you mean generate.per_class"),
    ("prepare", "data.split.val=1.5", "data.split.val", "[0, 1)", "1.5"),
    ("train", "model.lr=-1", "model.lr", "> 0", "-1"),
    ("evaluate", "evaluate.utility.arms=[tstr,nope]", "evaluate.utility.arms", "'trtr'", "'nope'"),
    ("export", "export.shard_size.samples=0", "export.shard_size.samples", ">= 1", "got 0"),
    ("privacy", "privacy.gates.max_flagged_share=2", "privacy.gates.max_flagged_share", "[0, 1]", "2"),
    ("train", "trainer.max_time=5min", "trainer.max_time", "DD:HH:MM:SS", "'5min'"),
    ("prepare", "data=nosuch", "data", "no option 'nosuch'", "medmnist"),
    ("generate", "generate.per_class=[1,", "generate.per_class", "cannot parse override", "[1,"),
]


@pytest.mark.parametrize("stage,override,key,needles", [(c[0], c[1], c[2], c[3:]) for c in STAGE_CASES],
                         ids=[c[1] for c in STAGE_CASES])
def test_stage_config_error_is_one_line_exit_2(tmp_path, stage, override, key, needles):
    # cwd is an empty folder: nothing to read there, so anything but the config error would show up.
    r = _run([str(REPO / "pipelines" / f"{stage}.py"), override], cwd=tmp_path)
    _one_line_error(r, key, *needles)
    assert list(tmp_path.iterdir()) == [], "a stage with a bad config wrote something"


def test_audit_override_typo_is_one_line_exit_2(tmp_path):
    # The typo must stop the audit before it reads its inputs (which do not exist here).
    r = _run(["-m", "synthgen.cli", "audit", "--train", "t.npz", "--holdout", "h.npz", "--synthetic", "s.npz",
              "--out", "r.json", "gates.max_flaged_share=0.05"], cwd=tmp_path)
    _one_line_error(r, "privacy.gates.max_flaged_share", "unknown key",
                    "did you mean privacy.gates.max_flagged_share")
    r = _run(["-m", "synthgen.cli", "audit", "--train", "t.npz", "--holdout", "h.npz", "--synthetic", "s.npz",
              "--out", "r.json", "gates.mia_alpha=abc"], cwd=tmp_path)
    _one_line_error(r, "privacy.gates.mia_alpha", "a number in (0, 1)")


def test_audit_good_overrides_pass():
    from synthgen.privacy.cli import default_privacy_config

    cfg = default_privacy_config(["embedding.steps=30", "gates.mia_alpha=0.01", "calibration.floors.ssim=0.9"])
    assert cfg["embedding"]["steps"] == 30 and cfg["calibration"]["floors"]["ssim"] == 0.9
    with pytest.raises(ConfigError, match="privacy.embedding.steps"):
        default_privacy_config(["embedding.steps"])


@pytest.mark.parametrize("edit,key,needle", [
    (lambda p: p["generate"].__setitem__("per_class", "100"), "generate.per_class", "'100' (a string"),
    (lambda p: p["data"]["rare"].__setitem__("keep", -3), "data.rare.keep", ">= 0"),
    (lambda p: p["trainer"].__setitem__("max_time", 216000), "trainer.max_time", "DD:HH:MM:SS"),
    (lambda p: p["evaluate"]["classifier"].__setitem__("stpes", 10), "evaluate.classifier.stpes", "did you mean"),
    (lambda p: p["export"].__setitem__("shuffle", 1), "export.shuffle", "true or false"),
    (lambda p: p["privacy"].pop("gates"), "privacy.gates", "missing"),
    (lambda p: p["model"].__setitem__("autocast", "bf16"), "model.autocast", "true, false or 'auto'"),
], ids=["string-count", "negative-keep", "sexagesimal-time", "unknown-key", "int-for-bool", "deleted-group",
        "bad-bf16-switch"])
def test_hand_edited_params_yaml_is_validated(tmp_path, edit, key, needle):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = _run([str(REPO / "pipelines" / "generate.py")], cwd=tmp_path)
    _one_line_error(r, key, needle)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(params=tmp_path / "params.yaml")


def test_broken_params_yaml_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text("data:\n  image_size: [28\n")
    r = _run([str(REPO / "pipelines" / "prepare.py")], cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "params.yaml: not valid YAML (line" in r.stderr


# In-process: the rest of the kinds of mistakes, and what must keep working.
@pytest.mark.parametrize("overrides,key,needle", [
    (["generate.per_class=true"], "generate.per_class", "got True"),        # a bool is not an int
    (["generate.per_class=1e3"], "generate.per_class", "got 1000.0"),       # nor is a float
    (["model.channels=[32,0]"], "model.channels", ">= 1 each"),
    (["model.adam_betas=[0.9]"], "model.adam_betas", "a list of 2"),
    (["model=cgan", "model.diffaugment='color,flip'"], "model.diffaugment", "cutout"),
    (["model=cgan", "model.diffaugment=color,flip"], "model.diffaugment", "quote the value"),
    (["trainer.precision=bf15"], "trainer.precision", "bf16-mixed"),
    (["trainer=ddp", "trainer.num_nodes=0"], "trainer.num_nodes", ">= 1"),
    (["+trainer.gradient_clip=1.0"], "trainer.gradient_clip", "unknown key"),
    (["data=medmnist", "data.flavor=x"], "data.flavor", "did you mean data.flavour"),
    (["data=nifti", "data.root=x", "data.slice_axis=3"], "data.slice_axis", "0, 1, 2, -1"),
    (["data.rare.keep=-1"], "data.rare.keep", ">= 0"),
    (["data.split.val=0.5", "data.split.test=0.5"], "data.split", "must be < 1"),
    (["generate.balance_to=50"], "generate.per_class", "not both"),
    (["generate.counts={normal: 5}"], "generate.counts.normal", "+generate.counts.normal="),
    (["+generate.counts.normal=-5"], "generate.counts", "an integer in [0"),
    (["generate.sampling.sampler=euler"], "generate.sampling.sampler", "'dpmpp'"),
    (["seed=-1"], "seed", "in [0, "),
    (["seed=5000"], "generate.seed", "4096"),
    (["export.name=my.set"], "export.name", "[A-Za-z0-9_-]+"),
    (["export.format=webdataset+png"], "export.format", "dicom"),
    (["export.license=2024"], "export.license", "quote it"),
    (["privacy.calibration.quantile=0"], "privacy.calibration.quantile", "(0, 1]"),
    (["privacy.quantize_dtype=float32"], "privacy.quantize_dtype", "'uint8'"),
    (["+generate.per_class=5"], "generate.per_class", "already exists"),
    (["~generate.nope"], "generate.nope", "no such key"),
    (["foo=1"], "foo", "unknown key"),
    (["generate.per_class"], "generate.per_class", "cannot parse override"),
    (["generate.seed=${nope}"], "generate.seed", "nope"),
])
def test_config_errors_name_the_key(overrides, key, needle):
    with pytest.raises(ConfigError) as e:
        load_config(overrides)
    assert e.value.key == key, str(e.value)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("overrides", [
    [], ["model.lr=1"],                                      # an int where a float is expected
    ["data=medmnist", "data.path=/x.npz", "data.rare.classes=[basophil]", "data.rare.keep=20"],
    ["data=imagefolder", "data.root=/r", "data.image_size=null"], ["data=dicom"],   # data.root ??? is left alone
    ["data=nifti", "data.root=/r", "data.window=[40,400]"],
    ["model=cgan", "trainer=gpu", "budget=standard"], ["trainer=ddp", "trainer.devices=[0,1]"],
    ["+trainer.gradient_clip_val=1.0"],                      # a Lightning Trainer argument conf/ does not list
    ["trainer.max_time=null", "trainer.precision=bf16", "trainer.devices=auto"],
    ["+generate.counts.normal=7", "generate.per_class=null", "generate.balance_to=300"],
    ["++generate.checkpoint=/x.ckpt", "+generate.sampling.eta=0.5", "export.format=dicom+nifti"],
])
def test_valid_configs_pass(overrides):
    load_config(overrides)


def test_committed_params_and_demo_config_validate(tmp_path):
    validate_config(yaml.safe_load((REPO / "params.yaml").read_text()), CONF)
    load_config(params=REPO / "params.yaml")
    load_config([])  # the default composition: data=demo, budget=demo


def _compose_option(group: str, option: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose([f"{group}={option}"], CONF), throw_on_missing=False)


OPTIONS = [(g.name, p.stem) for g in sorted(CONF.iterdir()) if g.is_dir()
           for p in sorted(g.glob("*.yaml")) if not p.stem.startswith("_")]


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_validates_and_is_recognised(group, option):
    cfg = _compose_option(group, option)
    validate_config(cfg, CONF)
    if sum(1 for g, _ in OPTIONS if g == group) > 1 and isinstance(cfg.get(group), dict):
        assert infer_choices(cfg, CONF)[group] in ({option, "cpu", "gpu"} if group == "trainer" else {option})


def _leaves(node, key=""):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaves(v, f"{key}.{k}" if key else str(k))
    else:
        yield key, node


def test_the_table_covers_conf():
    """Every null default has a rule; every default passes its rule; no rule names a key conf/ lacks."""
    seen = set()
    for group, option in OPTIONS:
        for key, value in _leaves(_compose_option(group, option)):
            rule = _rule_for(key, RULES)
            seen.add(key)
            if value is None or value == MISSING:
                assert rule is not None, f"{key} (default {value!r} in conf/{group}/{option}.yaml) needs a rule"
            if rule is not None and value != MISSING and not isinstance(rule, Open):
                assert rule.ok(value), f"the default {key}={value!r} breaks its own rule: {rule.describe()}"
            if isinstance(value, list) and rule is None:
                assert value and infer(value).item is not None, f"{key}: an empty list default needs a rule"
    stale = [k for k in RULES if "*" not in k and k not in seen
             and not any(s.startswith(k + ".") for s in seen)]
    assert stale == [], f"rules for keys no conf/ option has: {stale}"
    # Maps of free-form keys are declared as such (their YAML default says nothing about the values).
    assert isinstance(RULES["generate.counts"], MapOf) and isinstance(RULES["data.prevalence"], MapOf)


def test_choice_lists_match_the_code():
    import typing

    from lightning.fabric.connector import _PRECISION_INPUT

    from synthgen import config_rules as cr
    from synthgen.data.symmetries import SYMMETRIES
    from synthgen.stages.export import FORMATS
    from synthgen.metrics.utility import ARMS
    from synthgen.models.diffaugment import POLICIES
    from synthgen.sampling import SAMPLERS
    from synthgen.sampling.schedule import PREDICTION_TYPES

    assert set(cr.SAMPLERS) == set(SAMPLERS) and set(cr.PREDICTION_TYPES) == set(PREDICTION_TYPES)
    assert set(cr.ARMS) == set(ARMS) and set(cr.FORMATS) == set(FORMATS) and set(cr.DIFFAUGMENT) == set(POLICIES)
    assert set(cr.SYMMETRY_NAMES) == set(SYMMETRIES)
    lightning = {v for lit in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(lit)}
    assert set(cr.PRECISIONS) | {64, 32, 16} == lightning


def test_reference_follows_the_group_choices():
    cfg = _compose_option("trainer", "ddp")
    assert "strategy" in reference_config(cfg, CONF)["trainer"]
    cfg = _compose_option("data", "medmnist")
    ref = reference_config(cfg, CONF)
    assert ref["data"]["path"] == MISSING and "patients" not in ref["data"]
    cfg["data"]["patients"] = 4  # a demo-only key in a medmnist config (hand-edited params.yaml)
    with pytest.raises(ConfigError, match=r"data\.patients: unknown key"):
        validate_config(cfg, CONF)


def test_list_rule_describes_items():
    assert ListOf(infer(1)).describe() == "a list (an integer each)"
