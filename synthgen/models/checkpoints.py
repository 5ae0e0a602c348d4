"""Checkpoints of the train stage: the resume state ``models/last.ckpt`` and the sampling checkpoint
``models/generator.ckpt``, both written atomically.

Every checkpoint carries a ``"synthgen"`` block ``{"target": "<module>.<Class>", "resume_key": ...,
"class_names": [...], "image_shape": [C, H, W], "version": ...}``, so the generate stage can rebuild any
:class:`~synthgen.models.base.GeneratorModule` subclass without knowing which model was trained:
``Class(**hyper_parameters)`` followed by ``load_state_dict(state_dict)``.
"""

from __future__ import annotations

import importlib
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from .. import __version__
from ..errors import InputError
from ..io import atomic_path
from .base import GeneratorModule, SeededModule


def class_path(obj: Any) -> str:
    """``"package.module.Class"`` of an object's class (what a Hydra ``_target_`` would name)."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def synthgen_block(model: SeededModule, resume_key: str) -> dict[str, Any]:
    """The ``"synthgen"`` checkpoint block (``class_names`` empty for a class-agnostic model: the autoencoder)."""
    return {"target": class_path(model), "resume_key": resume_key,
            "class_names": list(getattr(model, "class_names", [])),
            "image_shape": [int(v) for v in model.image_shape], "version": __version__}


def save_generator(path: str | os.PathLike, model: GeneratorModule, resume_key: str,
                   extra: dict[str, Any] | None = None) -> Path:
    """Write the sampling checkpoint: weights + constructor hyperparameters + the synthgen block (atomic).

    The module's ``state_dict`` holds whatever it samples with (the GAN's EMA generator is a submodule).
    """
    ckpt = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": L.__version__,
            "synthgen": {**synthgen_block(model, resume_key), **(extra or {})}}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def _locate(target: str) -> type:
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def load_generator(path: str | os.PathLike, map_location: str = "cpu") -> tuple[GeneratorModule, dict]:
    """Rebuild the generator stored at ``path``; returns ``(model in eval mode, its synthgen block)``.

    Raises:
        InputError: the file is missing, unreadable, not a synthgen checkpoint, or names a class that
            cannot be imported or is not a ``GeneratorModule``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found: run the train stage first (dvc repro train) "
                               "or point generate at an existing .ckpt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds on a damaged or foreign file
        raise InputError(path, f"not a readable torch checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    meta = ckpt.get("synthgen") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or "target" not in meta:
        raise InputError(path, "not a synthgen generator checkpoint (no 'synthgen.target' entry)")
    try:
        cls = _locate(meta["target"])
    except (ImportError, AttributeError) as e:
        raise InputError(path, f"model class {meta['target']!r} cannot be imported: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, GeneratorModule)):
        raise InputError(path, f"{meta['target']!r} is not a synthgen GeneratorModule")
    model = cls(**ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), meta


class ResumeCheckpoint(L.Callback):
    """Write the full training state to ``path`` (atomically) every ``every_s`` seconds or every
    ``every_n_batches`` batches, and at the end of training; tag it with the synthgen block.

    Saves happen in ``on_train_batch_end``, i.e. at a batch boundary: the batch's optimizer steps, scheduler
    step and EMA update are done (modules must not update weights in their own ``on_train_batch_end``, which
    Lightning runs after the callbacks'), and Lightning resumes with the next batch. The file is written to a
    temp sibling, flushed to disk, then renamed over ``path``: a kill at any moment leaves the previous or the
    new checkpoint, never a torn one. Works with manual optimization (Lightning's ``ModelCheckpoint`` skips its
    time rule there). Under DDP rank 0's clock decides and the decision is broadcast, so every rank enters
    ``save_checkpoint`` together.

    The batch at which training stops mid-epoch (``max_steps``, or ``max_time`` when this callback runs after
    Lightning's ``Timer``) is always checkpointed, and that checkpoint is kept at the end: the one Lightning would
    write in ``on_train_end`` records the unfinished epoch as finished, so raising the budget later would skip
    the rest of that epoch instead of continuing exactly.

    The training loader's position (a :class:`~synthgen.data.resumable.ResumableLoader`) is also kept in the
    synthgen block and handed back to the loader at ``on_train_start``: Lightning restores stateful loaders
    itself only when it resumes mid-epoch, not from a checkpoint written after an epoch ended.
    """

    def __init__(self, path: str | os.PathLike, resume_key: str, every_s: float | None = 60.0,
                 every_n_batches: int | None = None):
        self.path = Path(path)
        self.resume_key = resume_key
        self.every_s = every_s
        self.every_n_batches = every_n_batches
        self._last = time.monotonic()
        self._saved_step: int | None = None  # global step of the last batch-end save
        self._loader_state: dict[str, Any] | None = None  # loaded with a checkpoint, for on_train_start

    @staticmethod
    def _stopping(trainer: L.Trainer) -> bool:
        return bool(trainer.should_stop) or 0 < int(trainer.max_steps) <= int(trainer.global_step)

    def _due(self, trainer: L.Trainer) -> bool:
        if self.every_n_batches:
            return (trainer.fit_loop.total_batch_idx + 1) % int(self.every_n_batches) == 0
        due = self.every_s is not None and time.monotonic() - self._last >= float(self.every_s)
        return bool(trainer.strategy.broadcast(due, src=0))

    def save(self, trainer: L.Trainer) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        trainer.strategy.barrier("resume_checkpoint")
        self._last = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._due(trainer) or self._stopping(trainer):
            self.save(trainer)
            self._saved_step = int(trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done_in_epoch = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if self._saved_step == int(trainer.global_step) and done_in_epoch < trainer.num_training_batches:
            return  # stopped mid-epoch right after a batch-end save: keep it (see the class docstring)
        self.save(trainer)

    @staticmethod
    def _train_loader(trainer: L.Trainer) -> Any:
        loader = trainer.train_dataloader  # the DataLoader given to fit (None before fit sets it up)
        return loader if hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict") else None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["synthgen"] = synthgen_block(pl_module, self.resume_key)  # type: ignore[arg-type]
        loader = self._train_loader(trainer)
        if loader is not None:
            checkpoint["synthgen"]["train_loader"] = loader.state_dict()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._loader_state = (checkpoint.get("synthgen") or {}).get("train_loader")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = self._train_loader(trainer)
        if loader is not None and self._loader_state is not None:
            loader.load_state_dict(self._loader_state)  # before the first batch is drawn (the loader is lazy)
        self._loader_state = None


def resume_state(path: str | os.PathLike, resume_key: str) -> tuple[Path, int] | None:
    """``(path, global_step)`` when ``path`` is a resume checkpoint tagged with ``resume_key``; None when it
    is missing or belongs to another config (model config, seed or training images changed).

    Raises:
        InputError: the file exists but cannot be loaded (damaged, truncated, not a checkpoint): training
            stops with the file and the reason rather than silently starting afresh and overwriting it.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # torch raises many kinds on a damaged or foreign file
        raise InputError(path, f"cannot load the resume checkpoint ({type(e).__name__}: {e}); move it aside "
                               "or delete it to train from scratch") from None
    meta = ckpt.get("synthgen", {}) if isinstance(ckpt, dict) else {}
    if not meta:
        raise InputError(path, "not a synthgen resume checkpoint (no 'synthgen' block); move it aside or delete "
                               "it to train from scratch")
    if meta.get("resume_key") != resume_key:
        return None
    return path, int(ckpt.get("global_step", 0))


def move_aside(path: str | os.PathLike) -> Path:
    """Rename ``path`` to ``<stem>.<n>.ckpt.bak`` (the first free ``n``), so a new run never overwrites a
    checkpoint of another config; returns the new path."""
    path = Path(path)
    n = 1
    while (target := path.with_name(f"{path.stem}.{n}{path.suffix}.bak")).exists():
        n += 1
    os.replace(path, target)
    return target
