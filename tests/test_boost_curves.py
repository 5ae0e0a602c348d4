"""The rare-class curve (issue 14 item 5): evaluate's optional raw-synthetic arm, and the command that reads
``dvc exp show --json`` (or evaluate.json files) and draws rare recall / balanced accuracy against keep."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, make_medmnist_npz
from synthgen.config import compose
from synthgen.stages.prepare import prepare
from synthgen.data.prepared import load_split
from synthgen.io import save_npz
from synthgen.reports.boost_curves import curves, main, points_from_exp_show

TINY = ["evaluate.classifier.steps=6", "evaluate.classifier.batch_size=16", "evaluate.classifier.width=8",
        "evaluate.features.steps=6", "evaluate.utility.seeds=[0]", "evaluate.fidelity.kid_subsets=3",
        "evaluate.fidelity.kid_subset_size=20", "evaluate.diversity.pairs_per_class=8", "evaluate.threads=1",
        "evaluate.utility.arms=[trtr,trtr_balanced,trs_balanced]"]


def _rare(keep: int, base: float) -> dict:
    arm = lambda d: {"rare_recall": base + d, "balanced_accuracy": 0.8 + d / 10}  # noqa: E731
    return {"rare": {"classes": ["b"], "real_only": arm(0.0), "oversampling": arm(0.1), "raw_synthetic": arm(0.12),
                     "boost_plan": arm(0.15), "synthetic": arm(0.9)},
            "utility": {a: {"balanced_accuracy": {"mean": 0.8, "std": 0.01}, "recall": {"b": {"mean": base,
                                                                                                "std": 0.02}}}
                        for a in ("trtr", "trtr_balanced", "trs_balanced_raw", "trs_balanced_rare")}}


def _state(name: str, keep: int | None, metrics: dict | None, error: dict | None = None) -> dict:
    data = None if metrics is None else {
        "rev": name, "params": {"params.yaml": {"data": {"data": {"path": "/x/bloodmnist.npz",
                                                                   "rare": {"keep": keep}}}}},
        "metrics": {"metrics/evaluate.json": {"data": metrics}}}
    return {"rev": name + "0" * 8, "name": name, "data": data, "error": error, "experiments": None}


def test_exp_show_points_curves_and_png(tmp_path):
    exps = [{**_state("workspace", 40, _rare(40, 0.5)), "experiments": [
        {"revs": [_state("exp-a", 10, _rare(10, 0.2))], "executor": None, "name": "exp-a"},
        {"revs": [_state("exp-b", 10, _rare(10, 0.4))], "executor": None, "name": "exp-b"},
        {"revs": [_state("exp-c", 20, None)], "executor": {"state": "queued"}, "name": "exp-c"},
        {"revs": [_state("exp-d", 20, _rare(20, 0.3), error={"msg": "failed", "type": "x"})], "name": "exp-d"},
    ]}]
    points = points_from_exp_show(exps)
    assert sorted((p["keep"], p["exp"]) for p in points) == [(10, "exp-a"), (10, "exp-b"), (40, "workspace")]
    data = curves(points)
    plan = data["bloodmnist"]["oversampling + boost plan"]
    assert plan["keep"] == [10, 40] and plan["rare_recall"] == pytest.approx([0.45, 0.65])  # keep 10: averaged
    assert plan["rare_recall_std"] == pytest.approx([0.02, 0.02])
    assert set(data["bloodmnist"]) == {"real only", "oversampling", "oversampling + raw synthetic",
                                       "oversampling + boost plan"}
    (tmp_path / "exps.json").write_text(json.dumps(exps))
    out = tmp_path / "curves.png"
    assert main(["--exp-show", str(tmp_path / "exps.json"), "--out", str(out)]) == 0
    first = out.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(out.with_suffix(".json").read_text())["points"]["bloodmnist"]["real only"]["keep"] == [10, 40]
    assert main(["--exp-show", str(tmp_path / "exps.json"), "--out", str(out)]) == 0
    assert out.read_bytes() == first  # same input, same bytes


def test_bad_inputs_are_one_line_exit_2(tmp_path):
    (tmp_path / "e.json").write_text(json.dumps([_state("workspace", None, {"x": 1})]))
    for args in (["--exp-show", str(tmp_path / "e.json")], ["--metrics", "ten=x.json"],
                 ["--metrics", f"10={tmp_path / 'missing.json'}"]):
        r = subprocess.run([sys.executable, "-m", "synthgen.reports.boost_curves", *args, "--out",
                            str(tmp_path / "o.png")], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "error:" in r.stderr, r.stderr
    assert not (tmp_path / "o.png").exists()


def test_evaluate_rare_arms_add_only_the_rare_class_and_feed_the_curve(tmp_path, one_thread, monkeypatch):
    """The raw and boost-plan arms add the rare class's synthetic images only; where the shipped cohort holds none
    of the rare class, the boost-plan arm is the oversampling arm itself (same per-seed scores, not retrained)."""
    import synthgen.stages.evaluate as stage

    pools: list[np.ndarray] = []
    real_run_arms = stage.run_arms

    def spy(arms, seeds, real, synthetic, *a, **k):
        pools.append(np.unique(synthetic.labels))
        return real_run_arms(arms, seeds, real, synthetic, *a, **k)

    monkeypatch.setattr(stage, "run_arms", spy)
    src = make_medmnist_npz(tmp_path / "toy.npz", n=160, channels=3)
    data = [f"data.path={src}", "data.classes=[a,b,c]", "data.rare.classes=[b]", "data.rare.keep=6"]
    prepared = prepare(compose(["data=medmnist", *data]), tmp_path / "prepared")
    val = load_split(prepared, "val", as_float=False)
    keep = {"gen": np.ones(len(val.labels), bool), "cur": val.labels != 1}  # the plan shipped no `b`
    for name, reps in (("gen", 3), ("cur", 1)):
        x, y = np.concatenate([val.images[keep[name]]] * reps), np.concatenate([val.labels[keep[name]]] * reps)
        save_npz(tmp_path / name / "cohort.npz", images=x, labels=y, seeds=np.arange(len(y), dtype=np.int64))
        (tmp_path / name / "cohort.json").write_text(json.dumps({"class_names": ["a", "b", "c"]}))
    cfg = compose(["data=medmnist", *data, f"paths.prepared={prepared}", f"evaluate.cohort={tmp_path / 'cur'}",
                   f"evaluate.raw_cohort={tmp_path / 'gen'}", f"evaluate.cache_dir={tmp_path / 'cache'}",
                   f"paths.metrics={tmp_path / 'm'}", f"paths.reports={tmp_path / 'm'}", *TINY,
                   "evaluate.utility.seeds=[0,1]"])
    m = json.loads(stage.run(cfg).read_text())
    assert set(m["utility"]) >= {"trtr", "trtr_balanced", "trs_balanced", "trs_balanced_raw", "trs_balanced_rare"}
    assert set(m["rare"]) >= {"real_only", "oversampling", "synthetic", "raw_synthetic", "boost_plan"}
    # One run_arms call for the three configured arms (the whole cohort: a and c), one for the raw arm (b only);
    # none for the boost-plan arm, whose pool is empty.
    assert [p.tolist() for p in pools] == [[0, 2], [1]]
    assert m["rare"]["synthetic_images"] == {"boost_plan": 0, "raw_synthetic": 3 * int((val.labels == 1).sum())}
    assert m["utility"]["trs_balanced_rare"] == m["utility"]["trtr_balanced"]
    paired = m["rare"]["boost_plan_paired"]["rare_recall"]
    assert paired["per_seed"] == [0.0, 0.0] and paired["ci"] == [0.0, 0.0]
    assert len(m["rare"]["raw_synthetic_paired"]["balanced_accuracy"]["per_seed"]) == 2
    out = tmp_path / "c.png"
    assert main(["--metrics", f"toy:6={tmp_path / 'm' / 'evaluate.json'}", "--out", str(out)]) == 0
    pts = json.loads(out.with_suffix(".json").read_text())["points"]["toy"]
    assert pts["oversampling + raw synthetic"]["keep"] == [6] and len(pts) == 4
    assert pts["oversampling + boost plan"]["rare_recall"] == pts["oversampling"]["rare_recall"]
    # A cohort of the rare class only (generate.per_class=0): the boost-plan arm is trs_balanced itself.
    only_b = val.labels == 1
    save_npz(tmp_path / "cur" / "cohort.npz", images=val.images[only_b], labels=val.labels[only_b],
             seeds=np.arange(int(only_b.sum()), dtype=np.int64))
    pools.clear()
    m = json.loads(stage.run(cfg).read_text())
    assert [p.tolist() for p in pools] == [[1], [1]]
    assert m["utility"]["trs_balanced_rare"] == m["utility"]["trs_balanced"]
    assert m["rare"]["synthetic_images"]["boost_plan"] == int(only_b.sum())
