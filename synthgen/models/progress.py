"""What a person watches while the train stage runs: dvclive's Lightning logger and a rich progress bar.

* :func:`live_logger`: ``dvclive.lightning.DVCLiveLogger`` writing ``<paths.reports>/live/train/``
  (``metrics.json`` + ``plots/metrics/<name>.tsv``, one row per logged step): ``dvc plots show``/``diff`` draw them
  (dvc.yaml lists the folder) and DVC Studio follows them live. It never edits dvc.yaml (``dvcyaml=None``) and
  never creates experiments itself (``save_dvc_exp=False``): ``dvc exp run`` does that. On resume it appends to
  the curves of the run it continues (the folder persists, like ``models/``); from scratch it starts them anew.
  The exact, resume-safe curve stays ``reports/train_losses.csv`` (:class:`synthgen.models.curves.LossCurve`).
* :func:`progress_bar`: Lightning's ``RichProgressBar`` when stdout is a terminal and ``trainer.enable_progress_bar``
  is on; no bar at all otherwise, so logs in CI and ``dvc repro`` captured to a file stay clean.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import lightning as L


def live_logger(directory: str | os.PathLike, resume: bool) -> Any:
    """``DVCLiveLogger`` into ``directory``; ``resume`` appends to its curves instead of starting them anew."""
    from dvclive.lightning import DVCLiveLogger

    return DVCLiveLogger(dir=str(Path(directory)), resume=resume, dvcyaml=None, save_dvc_exp=False, report=None)


def live_plots_dir(directory: str | os.PathLike) -> Path:
    """``<directory>/plots/metrics``, created: dvc.yaml declares it, and a run too short to reach
    ``trainer.log_every_n_steps`` logs no row (the folder is then empty, not missing)."""
    plots = Path(directory) / "plots" / "metrics"
    plots.mkdir(parents=True, exist_ok=True)
    return plots


def progress_bar(enabled: bool, stream: Any = None) -> tuple[list[L.Callback], bool]:
    """``(callbacks, enable_progress_bar)`` for the Trainer: a rich bar only on an interactive terminal."""
    stream = sys.stdout if stream is None else stream
    if not enabled or not getattr(stream, "isatty", lambda: False)():
        return [], False
    from lightning.pytorch.callbacks import RichProgressBar

    return [RichProgressBar(leave=True)], True
