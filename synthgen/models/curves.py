"""Loss curves for ``dvc plots``: a CSV whose rows survive resume (kept in the callback's checkpointed
state) and which is rewritten atomically, so a killed run never leaves a half-written file."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

import lightning as L

from ..io import atomic_path


class LossCurve(L.Callback):
    """Every ``every_n_batches`` batches, append ``step, epoch`` and the scalar values in
    ``trainer.callback_metrics`` (whatever the module logs) to ``path``; validation metrics are appended
    after each validation run. Columns are the sorted union of all names seen; missing cells stay empty."""

    def __init__(self, path: str | os.PathLike, every_n_batches: int = 25):
        self.path = Path(path)
        self.every = max(1, int(every_n_batches))
        self.rows: list[dict[str, float]] = []

    def _row(self, trainer: L.Trainer, keys: Any = None) -> dict[str, float]:
        row: dict[str, float] = {"step": int(trainer.global_step), "epoch": int(trainer.current_epoch)}
        for k, v in trainer.callback_metrics.items():
            if keys is not None and not keys(k):
                continue
            try:
                value = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                row[k] = round(value, 6)
        return row

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if (trainer.fit_loop.total_batch_idx + 1) % self.every == 0:
            self.rows.append(self._row(trainer, keys=lambda k: not k.startswith("val")))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.rows.append(self._row(trainer, keys=lambda k: k.startswith("val")))
            self.write(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.write(trainer)

    def write(self, trainer: L.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        names = sorted({k for r in self.rows for k in r} - {"step", "epoch"})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["step", "epoch", *names], lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        with atomic_path(self.path) as tmp:
            tmp.write_text(buf.getvalue(), encoding="utf-8")

    def last_values(self) -> dict[str, float]:
        """The latest logged value of every metric name (over all rows, resumed ones included)."""
        out: dict[str, float] = {}
        for row in self.rows:
            out.update({k: v for k, v in row.items() if k not in ("step", "epoch")})
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))
