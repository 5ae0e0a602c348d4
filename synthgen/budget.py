"""Budgets that fit the data: a compute budget (``conf/budget/``) names the data sources it is sized for.

``budget=demo`` (the repository default) is a smoke-test budget for the embedded demo cohort: 200 training
steps, 100 images per class, one evaluation seed. Selecting another data source without another budget
(``dvc exp run -S data=medmnist -S data.path=...``) would silently train a real cohort for 200 steps, so the train
stage checks the pair: a data source outside ``budget.sized_for`` logs a WARNING at train start and the warning
is recorded in ``metrics/train.json`` (``"budget": {"name", "sized_for", "warning"}``) and the dataset card.
``synthgen init`` avoids the pair altogether: a project for a team's own data starts on ``budget=standard``.
"""

from __future__ import annotations

from typing import Any, Mapping


def budget_check(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name", "sized_for", "warning"}`` for a composed config; ``warning`` is None when the budget fits.

    A budget without a ``budget:`` block (a team's own ``conf/budget/*.yaml``) is taken to fit any source.
    """
    budget = cfg.get("budget") or {}
    name, sized_for = budget.get("name"), budget.get("sized_for")
    sized_for = None if sized_for is None else [str(s) for s in sized_for]
    source = str((cfg.get("data") or {}).get("name"))
    warning = None
    if sized_for is not None and source not in sized_for:
        trainer = cfg.get("trainer") or {}
        warning = (f"budget={name} is sized for data source {', '.join(sized_for)}, not {source} "
                   f"(trainer.max_steps={trainer.get('max_steps')}, max_time={trainer.get('max_time')}): a smoke "
                   f"test, not a model of this cohort; select budget=standard (dvc exp run -S budget=standard) "
                   f"or a conf/budget/ file sized for {source}")
    return {"name": name, "sized_for": sized_for, "warning": warning}
