"""Building blocks of a training run shared by the train stage and the rare-class fine-tune
(:mod:`synthgen.models.finetune`): the resumable training loader and the Lightning Trainer from the ``trainer``
config group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import TensorDataset

from ..data.resumable import ResumableLoader
from .progress import progress_bar


def tensor_dataset(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    """``(images (N, C, H, W), labels (N,))`` as a ``TensorDataset`` (no copy where the arrays are contiguous)."""
    return TensorDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels))


def train_loader(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                 num_workers: int = 0, class_balance: float = 0.0) -> ResumableLoader:
    """Shuffled training batches (last partial batch dropped): epoch ``e`` visits a permutation seeded by
    ``(seed, e)`` (``class_balance`` > 0: tempered class-balanced draws seeded the same way,
    :class:`~synthgen.data.resumable.ClassBalancedSampler`), and the position within the epoch is checkpointed
    (:class:`ResumableLoader`)."""
    ds = tensor_dataset(images, labels)
    return ResumableLoader(ds, batch_size=min(batch_size, len(ds)), seed=seed, shuffle=True, drop_last=True,
                           num_workers=num_workers, labels=labels, class_balance=class_balance)


def build_trainer(trainer_cfg: DictConfig, callbacks: list[L.Callback], root: Path, logger: Any = False,
                  manual_optimization: bool = False) -> L.Trainer:
    """``lightning.Trainer`` from the ``trainer`` group plus the stage's callbacks and ``logger`` (dvclive's,
    :mod:`synthgen.models.progress`); a rich progress bar only on a terminal; no default ModelCheckpoint:
    :class:`ResumeCheckpoint` replaces it; no DistributedSampler: the training loader's sampler splits epochs
    over DDP ranks itself, resumably.

    ``manual_optimization`` (the GAN) with ``trainer.strategy: ddp``: DDP is told to expect parameters without
    a gradient (``ddp_find_unused_parameters_true``): the discriminator step's backward reaches no generator
    weight, which plain DDP rejects."""
    from hydra.utils import instantiate

    kwargs = OmegaConf.to_container(trainer_cfg, resolve=True)
    kwargs.setdefault("_target_", "lightning.pytorch.Trainer")
    kwargs["use_distributed_sampler"] = False
    if manual_optimization and kwargs.get("strategy") == "ddp":
        kwargs["strategy"] = "ddp_find_unused_parameters_true"
    bar, kwargs["enable_progress_bar"] = progress_bar(bool(kwargs.get("enable_progress_bar", True)))
    return instantiate(kwargs, callbacks=[*callbacks, *bar], logger=logger, enable_checkpointing=False,
                       default_root_dir=str(root), _convert_="all")
