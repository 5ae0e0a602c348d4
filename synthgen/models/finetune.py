"""Optional short rare-class fine-tune after the main training (``train.finetune``; off by default).

``train.finetune = {classes: [names], steps: S, lr_factor: f}`` with ``classes`` non-empty and ``S > 0``: once
the main training has reached its budget, training continues for ``S`` more batches drawn only from the training
images of ``classes`` (a :class:`~synthgen.data.resumable.ResumableLoader` over that subset, seeded by
``seed + FINETUNE_SEED_OFFSET``), every learning rate multiplied by ``f``. It continues *from the main run's end
checkpoint* ``models/last.ckpt`` (weights, EMA weights, optimizer moments, scheduler, step counter, training
random state), so the EMA decay and the warm-up keep counting from there; the GAN's standing statistics are
recomputed afterwards as usual (:func:`synthgen.stages.train.train` calls ``prepare_for_sampling`` last).

Resume: ``models/finetune.ckpt`` is written like ``last.ckpt`` (:class:`~synthgen.models.checkpoints.
ResumeCheckpoint`, the same time/batch rule) under a key made of the main key and the fine-tune settings; a
re-run continues from it, so with a step budget a fine-tune killed at any moment and run again ends with the
weights of an uninterrupted one. No validation runs during the fine-tune and its losses are not added to
``reports/train_losses.csv``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from ..io import dumps_json
from .checkpoints import ResumeCheckpoint, move_aside, resume_state
from .fitting import build_trainer, train_loader

log = logging.getLogger(__name__)

#: the fine-tune loader's seed is ``seed + FINETUNE_SEED_OFFSET`` (never the main loader's stream).
FINETUNE_SEED_OFFSET = 7919


def finetune_settings(train_cfg: Mapping[str, Any] | DictConfig, class_names: list[str]
                      ) -> dict[str, Any] | None:
    """``{"classes", "labels", "steps", "lr_factor"}`` of ``train.finetune``, or None when it is off (no classes
    or no steps). An unknown class name raises :class:`ConfigError` (exit 2)."""
    ft = train_cfg.get("finetune") or {}
    classes = [str(c) for c in (ft.get("classes") or [])]
    steps = int(ft.get("steps") or 0)
    if not classes or steps <= 0:
        return None
    unknown = [c for c in classes if c not in class_names]
    if unknown:
        raise ConfigError("train.finetune.classes",
                          f"unknown class {unknown[0]!r}; classes are {', '.join(class_names)}")
    return {"classes": classes, "labels": [class_names.index(c) for c in classes], "steps": steps,
            "lr_factor": float(ft.get("lr_factor", 0.1))}


class ScaleLearningRates(L.Callback):
    """Multiplies every optimizer's learning rates (and an LR scheduler's base rates) by ``factor`` once, at the
    start of the fine-tune; the fact that it did is checkpointed, so a resumed fine-tune (whose optimizer state
    already holds the scaled rates) is not scaled twice."""

    def __init__(self, factor: float):
        self.factor = float(factor)
        self.applied = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.applied:
            return
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] *= self.factor
                if "initial_lr" in group:
                    group["initial_lr"] *= self.factor
        for cfg in trainer.lr_scheduler_configs:
            sched = cfg.scheduler
            if hasattr(sched, "base_lrs"):
                sched.base_lrs = [lr * self.factor for lr in sched.base_lrs]
        self.applied = True

    def state_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "factor": self.factor}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.applied = bool(state_dict.get("applied", False))


def finetune_key(main_key: str, settings: Mapping[str, Any]) -> str:
    ident = {"main": main_key, **{k: settings[k] for k in ("classes", "steps", "lr_factor")}}
    return hashlib.sha256(dumps_json(ident).encode()).hexdigest()[:16]


def run_finetune(cfg: DictConfig, model: L.LightningModule, images: np.ndarray, labels: np.ndarray,
                 settings: Mapping[str, Any], main_key: str, main_step: int, batch_size: int,
                 steps_per_batch: int) -> dict[str, Any]:
    """Fine-tune ``model`` on the images ``(N, C, H, W)`` of ``settings["labels"]`` (module docstring); returns
    the ``finetune`` block of ``metrics/train.json``."""

    models_dir = Path(cfg.paths.models)
    mask = np.isin(labels, np.asarray(settings["labels"], dtype=labels.dtype))
    if not mask.any():
        raise ConfigError("train.finetune.classes", f"no training images of {', '.join(settings['classes'])}")
    key = finetune_key(main_key, settings)
    ft_last = models_dir / "finetune.ckpt"
    state = resume_state(ft_last, key) if cfg.train.get("resume", True) else None
    if state is None and ft_last.exists():
        log.warning("%s belongs to another config: moved it to %s", ft_last, move_aside(ft_last))
    ckpt_path = state[0] if state else models_dir / "last.ckpt"
    every_n = cfg.train.get("checkpoint_every_n_batches")
    saver = ResumeCheckpoint(ft_last, key, every_s=cfg.train.get("checkpoint_every_s", 60),
                             every_n_batches=int(every_n) if every_n else None)
    trainer_cfg = OmegaConf.merge(cfg.trainer, {
        "max_steps": int(main_step) + int(settings["steps"]) * int(steps_per_batch), "max_epochs": -1,
        "max_time": None, "limit_val_batches": 0, "num_sanity_val_steps": 0})
    trainer = build_trainer(trainer_cfg, [ScaleLearningRates(settings["lr_factor"]), saver], models_dir,
                            manual_optimization=not model.automatic_optimization)
    loader = train_loader(images[mask], labels[mask], batch_size, int(cfg.seed) + FINETUNE_SEED_OFFSET,
                          int(cfg.train.get("num_workers") or 0))
    t0 = time.perf_counter()
    trainer.fit(model, train_dataloaders=loader, ckpt_path=str(ckpt_path))
    return {"fit_seconds": round(time.perf_counter() - t0, 1),"classes": list(settings["classes"]), "steps": int(settings["steps"]),
            "lr_factor": float(settings["lr_factor"]), "images": int(mask.sum()),
            "from_global_step": int(main_step), "global_step": int(trainer.global_step)}
