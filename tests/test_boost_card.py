"""The dataset card states the boost plan per class (issue 14 item 3), from the ``curation.plan`` summary that
the curate stage writes into ``cohort.json`` and that travels into ``data/audited``."""

from __future__ import annotations

import json

import numpy as np

from export_fixture import build_audited, export_cfg
from synthgen.curation.plan import BoostPlan, ClassPlan, PlanConfig, paired_interval
from synthgen.stages.export import export

CFG = PlanConfig.from_mapping({"amounts": [1, 10], "shares": [0.5], "seeds": [0, 1, 2, 3, 4], "steps": 10,
                               "batch_size": None, "guidance": None, "confidence": 0.95})


def _trial(n: int, gains: list[float], bacc: list[float]) -> dict:
    return {"stage": "amount", "amount": n / 40, "n_images": n, "share": 0.5, "guidance": 1.0,
            "recall_gain": paired_interval(gains, 0.95), "balanced_accuracy_gain": paired_interval(bacc, 0.95)}


def _plan() -> BoostPlan:
    ship = ClassPlan("rare.case", 40, 61, {"1": 400}, reason="gain on validation")
    ship.trials = [_trial(40, [0.01, -0.02, 0.0, 0.02, 0.01], [0.0] * 5),
                   _trial(400, [0.05, 0.03, 0.04, 0.06, 0.04], [0.01, 0.0, 0.02, 0.01, 0.0])]
    ship.chosen, ship.selected = ship.trials[1], np.arange(400)
    none = ClassPlan("normal", 300, 90, {"1": 100}, reason="no gain on validation")
    none.trials = [_trial(300, [0.01, -0.01, 0.0, 0.02, -0.02], [0.0] * 5)]
    return BoostPlan([ship, none], {}, CFG, {}, 3, 1.0)


def _with_plan(root, summary: dict | list) -> None:
    p = root / "data/audited/cohort.json"
    meta = json.loads(p.read_text())
    meta["curation"] = {"plan": summary}
    p.write_text(json.dumps(meta))


def test_card_states_the_plan_per_class(tmp_path):
    plan = _plan()
    lines = plan.summary_lines()
    assert lines[0] == ("rare.case: +0.044 +- 0.014 recall on validation (95% CI [0.030, 0.058]), 400 images at "
                        "guidance 1, share 0.5")
    assert lines[1].startswith("normal: no gain on validation (+0.000, 95% CI [") and lines[1].endswith(
        "for the best of 1 settings), none shipped")
    build_audited(tmp_path, n=8)
    _with_plan(tmp_path, plan.summary())
    text = (export(export_cfg(tmp_path)) / "README.md").read_text()
    assert "## Rare-class boost plan" in text and "5 classifier seeds" in text and "never the test split" in text
    for line in lines:
        assert f"- {line}" in text
    assert text.index("## Evaluation") < text.index("## Rare-class boost plan") < text.index("## Privacy report")


def test_card_without_a_plan_has_no_boost_section(tmp_path):
    build_audited(tmp_path, n=8)
    text = (export(export_cfg(tmp_path)) / "README.md").read_text()
    assert "Rare-class boost plan" not in text


def test_card_reads_a_plain_list_of_plan_lines(tmp_path):
    build_audited(tmp_path, n=8)
    _with_plan(tmp_path, ["rare.case: boost plan off (curate.plan.enabled is false), all 4 filter-kept candidates "
                          "shipped"])
    text = (export(export_cfg(tmp_path)) / "README.md").read_text()
    assert "## Rare-class boost plan" in text and "- rare.case: boost plan off" in text


def test_card_curation_section_counts_and_names_a_class_that_ships_nothing():
    from synthgen.export.card import curation_section

    meta = {"curation": {"thresholds": {"min_confidence": 0.05}, "per_class": {
        "a": {"in": 100, "kept": 90, "shipped": 90, "dropped": {"confidence": 8, "realism": 2}},
        "b": {"in": 100, "kept": 0, "shipped": 0, "dropped": {"confidence": 95, "realism": 5}}}}}
    text = "\n".join(curation_section(meta))
    assert "## Curation" in text and "| a | 100 | 90 | 90 | 8 | 2 |" in text and "| b | 100 | 0 | 0 | 95 | 5 |" in text
    assert "**No synthetic images of b**" in text and "No synthetic images of a" not in text
    assert curation_section({}) == [] and curation_section({"curation": {"per_class": {}}}) == []


def test_card_states_the_rare_class_test_result_of_what_ships():
    from synthgen.export.card import rare_test_lines

    arm = lambda r, b: {"rare_recall": r, "balanced_accuracy": b}  # noqa: E731
    paired = {"rare_recall": paired_interval([0.02, 0.04, 0.03, 0.03, 0.035], 0.95),
              "balanced_accuracy": paired_interval([0.0, 0.01, 0.0, 0.005, 0.0], 0.95)}
    ev = {"seeds": 5, "rare": {"classes": ["basophil"], "oversampling": arm(0.671, 0.896),
                               "boost_plan": arm(0.702, 0.899), "synthetic_images": {"boost_plan": 400},
                               "boost_plan_paired": paired}}
    (line,) = rare_test_lines(ev)
    assert "Rare class basophil on the real test split" in line and "5 classifier seeds" in line
    assert "oversampling alone 0.671, adding the 400 shipped synthetic images of this class: 0.702" in line
    # sd 0.00742 (ddof 1), t(0.975, 4) = 2.776: half width 0.0092
    assert "(gain +0.031, 95% CI [+0.022, +0.040])" in line and "balanced accuracy 0.896 -> 0.899" in line
    ev["rare"].update(boost_plan=arm(0.671, 0.896), synthetic_images={"boost_plan": 0})
    del ev["rare"]["boost_plan_paired"]
    (line,) = rare_test_lines(ev)
    assert "no synthetic image of this class ships, so the second figure is the first: 0.671 (+0.000)" in line
    assert rare_test_lines({"rare": {"classes": ["b"], "oversampling": arm(0.5, 0.5)}}) == []
    assert rare_test_lines(None) == []
