"""The train stage: ``data/prepared/{train,val}.npz`` -> ``models/last.ckpt`` (resume state),
``models/generator.ckpt`` (sampling weights), ``metrics/train.json`` and ``reports/train_losses.csv``.

``metrics/train.json``: the training outcome (``model``, ``target``, ``parameters``, ``global_step``, ``batches``
in all runs, complete ``epochs``), then what depends on how the run went: ``resumed_from_step``,
``batches_this_run``, ``train_images_per_s``, ``fit_seconds``, ``stage_seconds`` and the ``final`` logged values
(epoch means cover only the part of an epoch after a resume). Only the outcome reaches the dataset card.

Any :class:`~synthgen.models.base.GeneratorModule` named by ``model._target_`` trains here: the stage builds
it with ``class_names`` and ``image_shape`` from ``meta.json`` plus the model group's keys (minus ``name`` and
``batch_size``, which the stage reads), and a Lightning Trainer from the ``trainer`` group. Null keys of the group
take the values of its ``presets`` row for the prepared image side (:func:`sized_model_config`,
:mod:`synthgen.sizing`); what was used is recorded in ``models/generator.ckpt`` and ``metrics/train.json``.

Resume: ``models/last.ckpt`` is rewritten atomically at a batch boundary every ``train.checkpoint_every_s``
seconds (or every ``train.checkpoint_every_n_batches`` batches) and at the end. A re-run whose model config,
seed and training images are unchanged continues from it; anything else starts afresh. The checkpoint holds
everything the next batch depends on: weights, EMA weights, optimizer and scheduler state, step and epoch
counters, the position within the epoch of the seeded shuffling loader (:mod:`synthgen.data.resumable`) and the
training random state (:meth:`GeneratorModule.training_generator`), so with a step or epoch budget a run
killed at any moment and run again ends with the weights of an uninterrupted run, bit for bit (same machine
and software). With ``trainer.max_time`` it continues with the time the checkpoint recorded as spent; how far
that budget gets depends on the machine's speed, so the weights are not reproducible then anyway. Budget keys
(``max_time``, ``max_steps``, ``max_epochs``) are not part of the resume key, so raising a budget extends a run.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from ..data.prepared import load_meta, load_split
from ..data.resumable import ResumableLoader, class_mixture
from ..errors import ConfigError, InputError, wrapped_input_error
from ..budget import budget_check
from ..sizing import PRESETS, apply_presets, image_side, missing_after_presets
from ..io import dumps_json, sha256_file, write_json
from ..models.base import GeneratorModule
from ..models.checkpoints import ResumeCheckpoint, class_path, move_aside, resume_state, save_generator
from ..models.curves import LossCurve
from ..models.finetune import finetune_settings, run_finetune
from ..models.fitting import build_trainer, tensor_dataset, train_loader
from ..models.progress import live_logger, live_plots_dir
from ..precision import use_bf16

log = logging.getLogger(__name__)

#: keys of the ``model`` group that belong to the stage, not to the model's constructor (``latent``: the
#: latent-diffusion switch, :func:`synthgen.models.latent.latent_enabled`; ``presets``/``presets3d``: the size
#: tables, :func:`sized_model_config`).
#: the model group's table of volume presets (``data.dims=3``), keyed by the largest volume edge.
PRESETS_3D = "presets3d"
MODEL_STAGE_KEYS = ("name", "batch_size", PRESETS, PRESETS_3D, "latent")


def sized_model_config(model_cfg: DictConfig | dict, image_shape: tuple[int, ...] | list[int]) -> dict[str, Any]:
    """The ``model`` group as a plain dict for inputs of ``image_shape``: ``(C, H, W)`` images take the row of
    ``presets`` for the image side, ``(C, D, H, W)`` volumes the row of ``presets3d`` for the largest edge (the
    row with the smallest side >= it; :mod:`synthgen.sizing`). Both tables are dropped, every null key the row
    names is filled from it (explicit values win), and ``batch_size`` and every key some row sizes are required
    (a row that leaves out a key the user left null is a :class:`ConfigError`; a volume larger than every
    ``presets3d`` row too). For latent diffusion the train
    stage passes the *latent* shape, so the UNet is sized for the space it denoises."""
    d = dict(model_cfg if isinstance(model_cfg, dict) else OmegaConf.to_container(model_cfg, resolve=True))
    side = image_side(image_shape)
    table = PRESETS_3D if len(image_shape) == 4 else PRESETS
    has_table = table in d
    tables = {t: d.pop(t, None) or {} for t in (PRESETS, PRESETS_3D)}
    if not has_table and table == PRESETS_3D:  # a 2D-only model (the GAN): its constructor says so
        return d
    rows = tables[table]
    sized = apply_presets({**d, PRESETS: rows}, side, f"model.{table}")
    sized_keys = sorted({k for row in rows.values() for k in (row or {})})
    missing_after_presets(sized, ["batch_size", *sized_keys], "model", side)
    return sized


def model_kwargs(model_cfg: DictConfig | dict) -> dict[str, Any]:
    """The constructor part of the ``model`` group (``_target_`` kept for ``hydra.utils.instantiate``)."""
    d = model_cfg if isinstance(model_cfg, dict) else OmegaConf.to_container(model_cfg, resolve=True)
    return {k: v for k, v in d.items() if k not in MODEL_STAGE_KEYS}


def build_model(model_cfg: DictConfig | dict, class_names: list[str], image_shape: tuple[int, ...],
                autoencoder: str | Path | None = None) -> GeneratorModule:
    """Instantiate ``model._target_`` with the prepared cohort's classes and image shape (``(C, H, W)``, or
    ``(C, D, H, W)`` for volumes); size presets applied (:func:`sized_model_config`, for latent diffusion on the
    latent shape); with latent diffusion on, a :class:`~synthgen.models.latent.LatentDiffusionModule` around
    the ``autoencoder`` checkpoint."""
    from hydra.utils import instantiate

    from ..models.latent import build_latent_model, latent_enabled

    full = model_cfg if isinstance(model_cfg, dict) else OmegaConf.to_container(model_cfg, resolve=True)
    latent = latent_enabled(full, image_shape)
    if latent and autoencoder is None:
        raise ConfigError("paths.autoencoder", "latent diffusion is on but no autoencoder checkpoint was given")
    sizing_shape = autoencoder_latent_shape(autoencoder) if latent else image_shape
    kwargs = model_kwargs(sized_model_config(full, sizing_shape))
    if "_target_" not in kwargs:
        raise ConfigError("model._target_", "no model class configured (pick one: model=cgan or model=ddpm)")
    full = model_cfg if isinstance(model_cfg, dict) else OmegaConf.to_container(model_cfg, resolve=True)
    if latent_enabled(full, image_shape):
        if autoencoder is None:
            raise ConfigError("paths.autoencoder", "latent diffusion is on but no autoencoder checkpoint was given")
        return build_latent_model(kwargs, class_names, image_shape, autoencoder)
    try:
        model = instantiate(kwargs, class_names=list(class_names), image_shape=list(image_shape), _convert_="all")
    except Exception as e:  # Hydra wraps constructor errors; surface ours (one line) unchanged
        ours = wrapped_input_error(e)
        if ours is None:
            raise
        raise ours from None
    if not isinstance(model, GeneratorModule):
        raise ConfigError("model._target_", f"{kwargs['_target_']} is not a synthgen GeneratorModule")
    return model


def autoencoder_latent_shape(path: str | Path) -> tuple[int, ...]:
    """The latent shape ``(C_latent, h, w)`` (or ``(C_latent, d, h, w)``) of the autoencoder stage's checkpoint.

    Raises:
        InputError: the checkpoint is missing or unreadable (run the autoencoder stage first).
    """
    from ..models.autoencoder import latent_shape, read_autoencoder

    hp = read_autoencoder(path)["hyper_parameters"]
    return latent_shape(hp["image_shape"], hp["channels"], hp["latent_channels"])


def resume_key(cfg: DictConfig, train_file: Path, world_size: int = 1, autoencoder: Path | None = None,
               model_cfg: dict[str, Any] | None = None) -> str:
    """What a resumable checkpoint must match: model config (``model_cfg``, the sized one the stage trains;
    default ``cfg.model``), seed, the exact training images, a non-zero ``train.class_balance`` (left out at 0,
    so checkpoints written before the option still resume) and, for latent diffusion, the autoencoder checkpoint.

    ``model.batch_size`` is per device: with ``world_size`` > 1 processes the key holds the global batch
    (``batch_size * world_size``) instead, so that a checkpoint resumes on another process count at the same
    global batch (2 processes x 32 <-> 1 process x 64); one process keeps the config as it is."""
    model = dict(OmegaConf.to_container(cfg.model, resolve=True) if model_cfg is None else model_cfg)
    if int(world_size) > 1:
        model["batch_size"] = int(model.get("batch_size") or 64) * int(world_size)
    ident = {"model": model, "seed": int(cfg.seed), "train_sha256": sha256_file(train_file)}
    if autoencoder is not None:
        ident["autoencoder_sha256"] = sha256_file(autoencoder)
    balance = float(cfg.train.get("class_balance") or 0.0)
    if balance > 0:
        ident["class_balance"] = balance
    return hashlib.sha256(dumps_json(ident).encode()).hexdigest()[:16]


def mixture_report(loader: ResumableLoader, labels: np.ndarray, class_names: list[str], batches: int,
                   class_balance: float) -> dict[str, Any]:
    """``metrics/train.json``'s ``class_mixture``: the class balance, each class's share of the training
    images (``data``), its draw probability (``target``, proportional to ``n_c ** (1 - class_balance)``) and
    its share of the images in the ``batches`` batches trained so far on this rank (``drawn``)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    target = class_mixture(counts, class_balance)
    per_epoch, bs = len(loader), int(loader.batch_size or 1)
    drawn = np.zeros(len(class_names), dtype=np.int64)
    for epoch in range(-(-batches // max(1, per_epoch))):
        take = min(per_epoch, batches - epoch * per_epoch) * bs
        drawn += np.bincount(labels[np.asarray(loader.sampler.indices(epoch)[:take], dtype=np.int64)],
                             minlength=len(class_names))
    shares = drawn / max(1, drawn.sum())
    return {"class_balance": float(class_balance),
            "data": {c: round(float(v), 5) for c, v in zip(class_names, counts / max(1, counts.sum()))},
            "target": {c: round(float(v), 5) for c, v in zip(class_names, target)},
            "drawn": {c: round(float(v), 5) for c, v in zip(class_names, shares)},
            "images_drawn": int(drawn.sum())}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run the train stage for a composed config; returns the metrics written to ``metrics/train.json``."""
    t_start = time.perf_counter()
    budget = budget_check(cfg)
    if budget["warning"]:
        log.warning("%s", budget["warning"])
    if cfg.train.get("num_threads"):
        torch.set_num_threads(int(cfg.train.num_threads))
    prepared = Path(cfg.paths.prepared)
    meta = load_meta(prepared)
    train_set, val_set = load_split(prepared, "train"), load_split(prepared, "val")
    if len(train_set) == 0:
        raise InputError(prepared / "train.npz", "no training images")
    class_names = list(meta["class_names"])
    image_shape = tuple(int(v) for v in train_set.images.shape[1:])
    ae_file = Path(cfg.paths.get("autoencoder") or "models_ae") / "autoencoder.ckpt"
    full_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    from ..models.latent import latent_enabled
    latent = latent_enabled(full_cfg, image_shape)  # latent diffusion: the loaders hand out encoded latents
    model_cfg = sized_model_config(full_cfg, autoencoder_latent_shape(ae_file) if latent else image_shape)
    batch_size = int(model_cfg["batch_size"])

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = build_model(full_cfg, class_names, image_shape, ae_file)
    models_dir = Path(cfg.paths.models)
    models_dir.mkdir(parents=True, exist_ok=True)
    last = models_dir / "last.ckpt"
    every_n = cfg.train.get("checkpoint_every_n_batches")
    saver = ResumeCheckpoint(last, "", every_s=cfg.train.get("checkpoint_every_s", 60),
                             every_n_batches=int(every_n) if every_n else None)
    curve = LossCurve(Path(cfg.paths.reports) / "train_losses.csv",
                      every_n_batches=int(cfg.trainer.get("log_every_n_steps") or 25))
    # The curve before the saver: a checkpoint then holds the curve row of the batch it was written at.
    trainer = build_trainer(cfg.trainer, [curve, saver], models_dir,
                            manual_optimization=not model.automatic_optimization)
    # ... and after Lightning's Timer, so that the batch where max_time runs out is saved as the last one.
    trainer.callbacks.remove(saver)
    trainer.callbacks.append(saver)
    world_size = int(trainer.world_size)  # DDP processes (devices x nodes); batch_size is per process
    if hasattr(model, "check_distributed"):  # before any process starts: a one-line config error
        model.check_distributed(batch_size, world_size)
    key = saver.resume_key = resume_key(cfg, prepared / "train.npz", world_size, ae_file if latent else None,
                                        model_cfg)
    state = resume_state(last, key) if cfg.train.get("resume", True) else None
    ckpt_path, start_step = state if state else (None, 0)
    if state:
        log.info("resuming from %s at global step %d", ckpt_path, start_step)
    elif last.exists() and trainer.is_global_zero:  # another config (or resume off): keep it, never overwrite it
        aside = move_aside(last)
        log.warning("%s belongs to another config or train.resume is off: moved it to %s and training from "
                    "scratch", last, aside)

    live_dir = Path(cfg.paths.reports) / "live" / "train"
    trainer.logger = live_logger(live_dir, resume=ckpt_path is not None)

    workers = int(cfg.train.get("num_workers") or 0)
    balance = float(cfg.train.get("class_balance") or 0.0)
    train_x, val_x = train_set.images, val_set.images
    if latent:
        t_enc = time.perf_counter()
        train_x, val_x = model.training_inputs(train_x), model.training_inputs(val_x)
        encode_s = time.perf_counter() - t_enc
    train_dl = train_loader(train_x, train_set.labels, batch_size, int(cfg.seed), workers, balance)
    val_dl = DataLoader(tensor_dataset(val_x, val_set.labels), batch_size=min(batch_size, len(val_set)),
                        shuffle=False, num_workers=workers) if len(val_set) else None
    t_fit = time.perf_counter()
    trainer.fit(model, train_dataloaders=train_dl, val_dataloaders=val_dl,
                ckpt_path=str(ckpt_path) if ckpt_path else None)
    fit_s = time.perf_counter() - t_fit
    # Lightning skips the loop (and on_train_end) when a resumed checkpoint already meets the budget; the
    # curve's rows come back with the checkpoint, so write them here too (DVC deleted the old file).
    curve.write(trainer)
    if trainer.is_global_zero:
        live_plots_dir(live_dir)

    steps_per_batch = max(1, len(trainer.optimizers)) if not model.automatic_optimization else 1
    batches_this_run = (trainer.global_step - start_step) // steps_per_batch
    main_batches, main_step = int(model.rng_batches), int(trainer.global_step)
    ft_settings = finetune_settings(cfg.train, class_names)
    finetune = None
    if ft_settings:  # continues from last.ckpt: every rank has finished (and rank 0 written) it
        trainer.strategy.barrier("train_main_done")
        finetune = run_finetune(cfg, model, train_x, train_set.labels, ft_settings, key, main_step,
                                batch_size, steps_per_batch)
    if hasattr(model, "prepare_for_sampling"):
        model.prepare_for_sampling(seed=int(cfg.seed))
    # Training outcome first (the dataset card shows these), then timings and resume bookkeeping (run-dependent:
    # they stay in metrics/). Epochs are counted from the checkpointed batch counter, not Lightning's epoch
    # counter, which skips a number when a run resumes from an end-of-training checkpoint.
    metrics = {
        "model": str(cfg.model.get("name", class_path(model))),
        "target": class_path(model),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "batch_size": batch_size,
        "global_step": int(trainer.global_step),
        "batches": int(model.rng_batches),
        "epochs": int(model.rng_batches // max(1, len(train_dl))),
        "budget": budget,
        "resumed_from_step": int(start_step),
        "batches_this_run": int(batches_this_run),
        # what ran: model.autocast=auto resolves per device (synthgen/precision.py)
        "bf16_autocast": use_bf16(model.hparams.get("autocast", False), trainer.strategy.root_device.type),
        "train_images_per_s": round(batches_this_run * batch_size * world_size / max(fit_s, 1e-9), 2),
        "fit_seconds": round(fit_s, 1),
        "stage_seconds": round(time.perf_counter() - t_start, 1),
        "final": {k: round(float(v), 5) for k, v in sorted(trainer.callback_metrics.items())
                  if torch.as_tensor(v).numel() == 1},
        "class_mixture": mixture_report(train_dl, train_set.labels, class_names, main_batches, balance),
    }
    if finetune:
        metrics["finetune"] = finetune
    if latent:
        metrics["latent"] = {"shape": list(model.sample_shape), "scale": float(model.latent_scale),
                             "autoencoder_sha256": sha256_file(ae_file), "encode_seconds": round(encode_s, 1)}
    if not metrics["final"]:  # a re-run of a finished training logs nothing: report the curve's last values
        metrics["final"] = {k: round(float(v), 5) for k, v in sorted(curve.last_values().items())}
    if trainer.is_global_zero:
        save_generator(models_dir / "generator.ckpt", model, key,
                       extra={"global_step": int(finetune["global_step"] if finetune else main_step),
                              "name": metrics["model"],
                              "config_model": model_cfg})
        write_json(Path(cfg.paths.metrics) / "train.json", metrics)
    trainer.strategy.barrier("train_stage_done")
    return metrics
