"""The validation-chosen boost plan (issue 14 items 3 and 6): it ships candidates that help the rare class on
validation, ships none where they do not, is deterministic, never reads the test split, and stops on bad
settings with a one-line ConfigError.

Tiny 8x8 world: ``hline`` (a horizontal line), ``blob`` (a 3x3 square) and the rare class ``rare`` whose images
are a vertical line (mode A) or a diagonal (mode B); its 3 real training images are all mode A, its
validation images half A, half B. Good candidates cover both modes (the classifier learns mode B only from
them); bad candidates are noise or copies of ``blob`` labelled ``rare``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthgen.config import load_config
from synthgen.curation.plan import BoostPlan, PlanConfig, choose_boost_plan, load_plan_inputs, paired_interval
from synthgen.errors import ConfigError
from synthgen.io import dumps_json
from synthgen.metrics.classifier import Recipe
from synthgen.metrics.utility import LabeledImages

NAMES = ["hline", "blob", "rare"]
RECIPE = Recipe(width=8, stages=2, steps=40, batch_size=32, lr=0.01, shift=0, bf16=False)
PLAN = {"enabled": True, "amounts": [1, 5, 10], "shares": [0.5, 0.75], "guidance": None, "seeds": [0, 1, 2],
        "steps": None, "batch_size": None, "confidence": 0.95, "max_balanced_accuracy_loss": 0.0}


def _image(kind: str, rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(0.2, 0.05, (8, 8))
    k = int(rng.integers(0, 8))
    if kind == "hline":
        x[k, :] = 0.9
    elif kind == "blob":
        r, c = rng.integers(0, 6, 2)
        x[r:r + 3, c:c + 3] = 0.9
    elif kind == "rare_a":
        x[:, k] = 0.9
    elif kind == "rare_b":
        x[np.arange(8), (np.arange(8) + k) % 8] = 0.9
    return np.clip(x, 0, 1)[None].astype(np.float32)


def _set(kinds: list[tuple[str, int, int]], seed: int) -> LabeledImages:
    """``kinds``: (kind, label, count) triples."""
    rng = np.random.default_rng(seed)
    x = [_image(k, rng) for k, _, n in kinds for _ in range(n)]
    y = [lab for _, lab, n in kinds for _ in range(n)]
    return LabeledImages(torch.from_numpy(np.stack(x)), np.asarray(y, dtype=np.int64))


@pytest.fixture(scope="module")
def world():
    train = _set([("hline", 0, 60), ("blob", 1, 60), ("rare_a", 2, 3)], seed=1)
    val = _set([("hline", 0, 20), ("blob", 1, 20), ("rare_a", 2, 10), ("rare_b", 2, 10)], seed=2)
    good = _set([("rare_a", 2, 15), ("rare_b", 2, 15)], seed=3)
    order = np.random.default_rng(0).permutation(len(good.labels))  # modes mixed, as a curated ranking would be
    good = LabeledImages(good.images[torch.as_tensor(order)], good.labels[order])
    rng = np.random.default_rng(4)
    noise = LabeledImages(torch.from_numpy(rng.uniform(0, 1, (30, 1, 8, 8)).astype(np.float32)),
                          np.full(30, 2, np.int64))
    blob = _set([("blob", 2, 30)], seed=5)  # images of another class labelled as the rare one
    return train, val, {"good": good, "noise": noise, "blob": blob}


def _plan(world, name: str, guidance: np.ndarray | None = None, cfg=None, seed: int = 0) -> BoostPlan:
    train, val, cands = world
    c = cands[name]
    g = np.ones(len(c.labels), np.float32) if guidance is None else guidance
    return choose_boost_plan(train, val, c, g, ["rare"], NAMES, cfg or PLAN, RECIPE, seed)


def _stable(plan: BoostPlan) -> str:
    js = plan.to_json()
    js.pop("wall_s")
    return dumps_json(js)


def test_good_candidates_ship_with_a_gain(world, one_thread):
    plan = _plan(world, "good")
    cls = plan.to_json()["classes"]["rare"]
    assert cls["verdict"] == "ship", plan.summary_lines()
    assert cls["chosen"]["recall_gain"]["ci"][0] > 0 and cls["chosen"]["balanced_accuracy_gain"]["ci"][1] >= 0
    sel = plan.selected_indices()
    assert len(sel) == cls["n_images"] > 0 and np.array_equal(sel, np.arange(cls["n_images"]))  # first n, best first
    assert plan.summary_lines()[0].startswith("rare: +") and "images at guidance 1" in plan.summary_lines()[0]
    # Every setting tried is recorded; the amounts come first, then the other share at the best amount.
    stages = [t["stage"] for t in cls["trials"]]
    assert stages == ["amount"] * 3 + ["share"]
    assert {t["n_images"] for t in cls["trials"] if t["stage"] == "amount"} == {3, 15, 30}
    summary = plan.summary()
    assert summary["classes"]["rare"]["shipped"] and summary["lines"] == plan.summary_lines()
    assert json.loads(json.dumps(plan.to_json())) == plan.to_json()  # plain JSON types only


@pytest.mark.parametrize("bad", ["noise", "blob"])
def test_candidates_without_gain_ship_nothing(world, one_thread, bad):
    plan = _plan(world, bad, cfg=dict(PLAN, amounts=[5, 10], shares=[0.5]))
    cls = plan.to_json()["classes"]["rare"]
    assert cls["verdict"] == "none" and cls["n_images"] == 0 and len(plan.selected_indices()) == 0, cls
    assert len(cls["trials"]) == 2 and "none shipped" in plan.summary_lines()[0]
    assert not plan.summary()["classes"]["rare"]["shipped"]
    # the reader learns what there was to gain: the baseline's own validation recall of the class
    base = plan.to_json()["baseline"]["recall"]["rare"]["mean"]
    assert f"where oversampling alone reaches recall {base:.3f} on its {cls['n_val']} images" in cls["reason"]


def test_plan_is_deterministic_and_searches_guidance(world, one_thread):
    train, val, cands = world
    good = cands["good"]
    both = LabeledImages(torch.cat([good.images, cands["noise"].images]),
                         np.concatenate([good.labels, cands["noise"].labels]))
    guidance = np.r_[np.full(30, 2.0), np.full(30, 1.0)].astype(np.float32)  # noise at the default (lowest)
    cfg = dict(PLAN, amounts=[5], shares=[0.5])
    a = choose_boost_plan(train, val, both, guidance, ["rare"], NAMES, cfg, RECIPE, 0)
    b = choose_boost_plan(train, val, both, guidance, ["rare"], NAMES, cfg, RECIPE, 0)
    assert _stable(a) == _stable(b)
    assert np.array_equal(a.selected_indices(), b.selected_indices())
    js = a.to_json()["classes"]["rare"]
    assert [t["stage"] for t in js["trials"]][-1] == "guidance" and js["n_candidates"] == {"1": 30, "2": 30}
    # The plan finds the good candidates at guidance 2 and ships only them.
    assert js["verdict"] == "ship" and js["guidance"] == 2.0, js
    assert set(a.selected_indices().tolist()) <= set(range(30))


def test_warm_start_ships_good_candidates_and_not_noise(world, one_thread):
    """``pretrain_steps``: one pretrained model per seed, continued by the baseline and by every setting."""
    cfg = dict(PLAN, amounts=[5], shares=[0.5], pretrain_steps=40, steps=20)
    good, noise = _plan(world, "good", cfg=cfg), _plan(world, "noise", cfg=cfg)
    assert good.to_json()["classes"]["rare"]["verdict"] == "ship", good.summary_lines()
    assert noise.to_json()["classes"]["rare"]["verdict"] == "none", noise.summary_lines()
    assert good.to_json()["baseline"] == noise.to_json()["baseline"]  # same pretrained models, same baseline
    assert good.to_json()["classifier"]["steps"] == 20


def test_soft_recall_metric_decides_and_both_metrics_are_recorded(world, one_thread):
    cfg = dict(PLAN, amounts=[5], shares=[0.5], metric="soft_recall")
    good, noise = _plan(world, "good", cfg=cfg), _plan(world, "noise", cfg=cfg)
    g = good.to_json()
    assert g["metric"] == "soft_recall" and "soft-recall" in g["rule"]
    assert g["classes"]["rare"]["verdict"] == "ship" and "soft recall (mean p(class)) on validation" in g["lines"][0]
    assert noise.to_json()["classes"]["rare"]["verdict"] == "none"
    trial = g["classes"]["rare"]["trials"][0]
    assert {"recall_gain", "balanced_accuracy_gain", "soft_recall_gain", "soft_balanced_accuracy_gain"} <= set(trial)
    assert set(g["baseline"]) >= {"recall", "soft_recall", "balanced_accuracy", "soft_balanced_accuracy"}


def _write_prepared(root, world, test_labels: np.ndarray) -> None:
    train, val, _ = world
    for split, s in (("train", train), ("val", val), ("test", LabeledImages(val.images, test_labels))):
        n = len(s.labels)
        np.savez(root / f"{split}.npz", images=(s.images.numpy() * 255).round().astype(np.uint8), labels=s.labels,
                 patient_ids=np.array([f"p{i}" for i in range(n)]), sources=np.array(["x"] * n))
    (root / "meta.json").write_text(json.dumps({"class_names": NAMES, "normalization": "uint8 / 255"}))


def test_plan_never_reads_the_test_split(world, one_thread, tmp_path, monkeypatch):
    _, val, cands = world
    cfg = dict(PLAN, amounts=[5], shares=[0.5], seeds=[0, 1])
    import synthgen.data.prepared as prepared

    real_load = prepared.load_split
    out = []
    for name, labels in (("clean", val.labels), ("poisoned", np.zeros_like(val.labels))):
        d = tmp_path / name
        d.mkdir()
        _write_prepared(d, world, labels)
        if name == "poisoned":
            (d / "test.npz").write_bytes(b"poison: not an npz")
        read = []
        monkeypatch.setattr(prepared, "load_split",
                            lambda p, split, **kw: read.append(split) or real_load(p, split, **kw))
        train, v, names = load_plan_inputs(d)
        assert sorted(read) == ["train", "val"] and names == NAMES
        c = cands["good"]
        plan = choose_boost_plan(train, v, c, np.ones(len(c.labels), np.float32), ["rare"], names, cfg, RECIPE, 0)
        out.append(_stable(plan))
    assert out[0] == out[1]


@pytest.mark.parametrize("edit,key,needle", [
    (dict(amounts=[0, 1]), "curate.plan.amounts", "> 0"),
    (dict(amounts=[-2]), "curate.plan.amounts", "> 0"),
    (dict(amounts=[]), "curate.plan.amounts", "non-empty"),
    (dict(shares=[1.5]), "curate.plan.shares", "(0, 1]"),
    (dict(seeds=[]), "curate.plan.seeds", "at least 2"),
    (dict(seeds=[3]), "curate.plan.seeds", "at least 2"),
    (dict(seeds=[1, 1]), "curate.plan.seeds", "unique"),
    (dict(steps=0), "curate.plan.steps", ">= 1"),
    (dict(pretrain_steps=-1), "curate.plan.pretrain_steps", ">= 0"),
    (dict(metric="auc"), "curate.plan.metric", "soft_recall"),
    (dict(confidence=1.0), "curate.plan.confidence", "(0, 1)"),
    (dict(max_balanced_accuracy_loss=-0.1), "curate.plan.max_balanced_accuracy_loss", "[0, 1)"),
])
def test_bad_plan_settings_raise_config_error(edit, key, needle):
    with pytest.raises(ConfigError) as e:
        PlanConfig.from_mapping(dict(PLAN, **edit))
    assert e.value.key == key and needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_unknown_class_raises_config_error(world):
    train, val, cands = world
    c = cands["good"]
    with pytest.raises(ConfigError) as e:
        choose_boost_plan(train, val, c, np.ones(len(c.labels)), ["rare", "nope"], NAMES, PLAN, RECIPE, 0)
    assert e.value.key == "curate.classes" and "nope" in str(e.value)


@pytest.mark.parametrize("override,key", [("curate.plan.amounts=[0,1]", "curate.plan.amounts"),
                                          ("curate.plan.seeds=[0]", "curate.plan.seeds"),
                                          ("curate.plan.shares=[0.5,2]", "curate.plan.shares")])
def test_bad_plan_settings_fail_config_validation(override, key):
    with pytest.raises(ConfigError) as e:
        load_config([override])
    assert e.value.key == key, str(e.value)


def test_paired_interval_matches_a_t_test():
    from scipy import stats

    d = [0.05, 0.02, 0.04, 0.03, 0.06]
    r = paired_interval(d, 0.95)
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=np.mean(d), scale=stats.sem(d))
    assert r["ci"] == pytest.approx([lo, hi]) and r["mean"] == pytest.approx(0.04)
    assert paired_interval([0.0, 0.0, 0.0], 0.95)["ci"] == [0.0, 0.0]
