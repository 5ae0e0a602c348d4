"""Generation plans: counts from per_class / counts / balance_to, seeds, clear config errors."""

import numpy as np
import pytest

from synthgen.config import compose
from synthgen.errors import ConfigError
from synthgen.sampling.plan import build_plan, class_counts_from_config, sample_seed

NAMES = ["basophil", "eosinophil", "platelet"]
REAL = {"basophil": 40, "eosinophil": 900, "platelet": 300}


def test_per_class_with_a_boosted_class():
    plan = build_plan({"per_class": 5, "counts": {"basophil": 12}, "seed": 3}, NAMES)
    assert plan.counts == {"basophil": 12, "eosinophil": 5, "platelet": 5}
    assert len(plan) == 22 and np.bincount(plan.labels).tolist() == [12, 5, 5]
    assert np.all(np.diff(plan.labels) >= 0)  # grouped by class
    assert len(np.unique(plan.seeds)) == len(plan)
    assert plan.seeds.dtype == np.int64 and plan.labels.dtype == np.int64


def test_balance_to_tops_up_with_real_counts():
    counts = class_counts_from_config({"per_class": None, "balance_to": 500, "counts": {}}, NAMES, REAL)
    assert counts == {"basophil": 460, "eosinophil": 0, "platelet": 200}


def test_raising_one_class_keeps_every_other_sample():
    a = build_plan({"per_class": 4, "counts": {}, "seed": 1}, NAMES)
    b = build_plan({"per_class": 4, "counts": {"eosinophil": 9}, "seed": 1}, NAMES)
    pairs_a = set(zip(a.labels.tolist(), a.seeds.tolist()))
    pairs_b = set(zip(b.labels.tolist(), b.seeds.tolist()))
    assert pairs_a <= pairs_b and len(pairs_b - pairs_a) == 5
    assert sample_seed(1, 1, 0) == (1 << 32) | (1 << 24)


def test_plan_is_deterministic_and_seed_dependent():
    cfg = {"per_class": 6, "counts": {}, "seed": 7}
    assert np.array_equal(build_plan(cfg, NAMES).seeds, build_plan(cfg, NAMES).seeds)
    assert not np.array_equal(build_plan({**cfg, "seed": 8}, NAMES).seeds, build_plan(cfg, NAMES).seeds)


def test_unknown_class_names_the_class_and_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        build_plan({"per_class": 1, "counts": {"basofil": 10}}, NAMES)
    msg = str(e.value)
    assert "generate.counts" in msg and "'basofil'" in msg
    assert all(n in msg for n in NAMES)


@pytest.mark.parametrize("cfg,match", [
    ({"per_class": 3, "balance_to": 10}, "not both"),
    ({"per_class": None, "balance_to": None}, "no count"),
    ({"per_class": -1}, "non-negative"),
    ({"per_class": 2, "seed": 5000}, "generate.seed"),
])
def test_bad_count_configs(cfg, match):
    with pytest.raises(ConfigError, match=match):
        build_plan(cfg, NAMES, REAL)


def test_counts_alone_may_name_every_class():
    plan = build_plan({"per_class": None, "balance_to": None, "counts": {n: 2 for n in NAMES}}, NAMES)
    assert len(plan) == 6


def test_rare_class_sweep_overrides_compose():
    # The README recipe: dvc exp run --queue -S 'data.rare.keep=20,50,200' -S '++generate.counts.basophil=1000'
    for keep in (20, 50, 200):
        cfg = compose(["data=medmnist", "data.path=/x.npz", "data.rare.classes=[basophil]",
                       f"data.rare.keep={keep}", "++generate.counts.basophil=1000", "model=cgan", "trainer=cpu"])
        assert cfg.data.rare.keep == keep and cfg.generate.counts.basophil == 1000
        counts = class_counts_from_config(cfg.generate, ["basophil", "eosinophil"])
        assert counts == {"basophil": 1000, "eosinophil": cfg.generate.per_class}
    for group in ("trainer=gpu", "trainer=ddp"):
        cfg = compose(["data=medmnist", "data.path=/x.npz", group])
        assert cfg.trainer.accelerator == "gpu" and cfg.generate.accelerator == "gpu"
    assert compose(["data=medmnist", "data.path=/x.npz", "trainer=ddp"]).trainer.strategy == "ddp"


def test_guidance_map_and_candidates_never_change_other_samples():
    from synthgen.sampling.plan import class_guidance

    cfg = {"per_class": 4, "counts": {}, "seed": 2, "sampling": {"guidance": {"platelet": 3.0}}}
    cur = {"classes": ["basophil"], "oversample": 2, "guidance": [1.0, 2.0], "plan": {"amounts": [0.5, 2]}}
    plain = build_plan(cfg, NAMES, REAL)
    boosted = build_plan(cfg, NAMES, REAL, cur)
    # the plan decides what ships of the boosted class: no ordinary basophils; the other classes' rows unchanged
    assert boosted.counts == {"basophil": 0, "eosinophil": 4, "platelet": 4}
    keep = plain.labels != 0
    n = int(keep.sum())
    assert np.array_equal(boosted.seeds[:n], plain.seeds[keep]) and np.array_equal(boosted.labels[:n], plain.labels[keep])
    assert plain.guidance.tolist() == [1.0] * 8 + [3.0] * 4 and not plain.candidate.any()
    assert boosted.candidates == {"basophil": 2 * 160} and boosted.candidate[n:].all()  # 2 x 2 x 40, 2 values
    assert np.bincount(boosted.guidance[n:].astype(int)).tolist() == [0, 160, 160]
    assert len(np.unique(boosted.seeds)) == len(boosted)
    bigger = build_plan(cfg, NAMES, REAL, {**cur, "oversample": 3})   # more candidates: same first ones
    assert set(boosted.seeds.tolist()) <= set(bigger.seeds.tolist())
    gan = build_plan(cfg, NAMES, REAL, cur, uses_guidance=False)
    assert (gan.guidance == 1.0).all() and gan.candidates == {"basophil": 160}
    # plan off: every candidate ships, and the ordinary samples are drawn as without candidates
    off = build_plan(cfg, NAMES, REAL, {**cur, "plan": {**cur["plan"], "enabled": False}})
    assert off.counts == plain.counts and np.array_equal(off.seeds[:len(plain)], plain.seeds)
    # an explicit count for the boosted class still draws that many ordinary samples
    asked = build_plan({**cfg, "counts": {"basophil": 3}}, NAMES, REAL, cur)
    assert asked.counts["basophil"] == 3 and np.array_equal(asked.seeds[:3], plain.seeds[:3])
    assert class_guidance(2.5, NAMES) == {n: 2.5 for n in NAMES}


@pytest.mark.parametrize("gen,cur,key", [
    ({"sampling": {"guidance": {"basofil": 2.0}}}, None, "generate.sampling.guidance"),
    ({"sampling": {"guidance": -1.0}}, None, "generate.sampling.guidance"),
    ({}, {"classes": ["basofil"], "oversample": 2, "guidance": [1.0]}, "curate.classes"),
    ({}, {"classes": ["basophil"], "oversample": 0, "guidance": [1.0]}, "curate.oversample"),
    ({}, {"classes": ["basophil"], "oversample": 1, "guidance": [1.0], "plan": {"amounts": [0, 1]}},
     "curate.plan.amounts"),
    ({}, {"classes": ["basophil"], "oversample": 1, "guidance": []}, "curate.guidance"),
])
def test_bad_guidance_and_boost_settings_name_the_key(gen, cur, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_plan({"per_class": 1, **gen}, NAMES, REAL, cur)
