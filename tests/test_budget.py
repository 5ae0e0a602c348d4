"""Budgets that fit the data: a real data source under the demo (smoke-test) budget warns."""

import logging

from synthgen.budget import budget_check
from synthgen.config import compose

OWN = ["data=medmnist", "data.path=/cohort.npz"]


def test_demo_budget_on_own_data_warns():
    b = budget_check(compose(OWN))
    assert b["name"] == "demo" and b["sized_for"] == ["demo"]
    assert "budget=demo" in b["warning"] and "medmnist" in b["warning"] and "budget=standard" in b["warning"]
    assert "max_steps=200" in b["warning"]


def test_fitting_budgets_do_not_warn():
    assert budget_check(compose(()))["warning"] is None  # the demo cohort under the demo budget
    assert budget_check(compose(["data=demo3d", "budget=demo3d"]))["warning"] is None  # the 3D demo, its budget
    assert "budget=demo" in budget_check(compose(["data=demo3d"]))["warning"]  # 200 volume steps: too slow
    standard = budget_check(compose(OWN + ["budget=standard"]))
    assert standard == {"name": "standard", "sized_for": None, "warning": None}
    assert budget_check({"data": {"name": "dicom"}})["warning"] is None  # a budget file without a budget: block


def test_train_stage_logs_and_records_the_warning(monkeypatch, caplog):
    # The train stage checks the budget before anything else: stop it right after the check.
    import synthgen.stages.train as training

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    monkeypatch.setattr(training, "load_meta", stop)
    cfg = compose(OWN + ["train.num_threads=null"])
    with caplog.at_level(logging.WARNING):
        try:
            training.train(cfg)
        except Stop:
            pass
    assert any(r.levelno == logging.WARNING and "budget=demo" in r.getMessage() for r in caplog.records)
