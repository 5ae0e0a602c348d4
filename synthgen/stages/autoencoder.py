"""The autoencoder stage (between prepare and train): ``data/prepared`` -> ``models_ae/`` (``paths.autoencoder``).

When latent diffusion is on (:func:`synthgen.models.latent.latent_enabled`: ``model.latent``, null = 2D
images from 128 px up with ``model=ddpm``), it trains the ``autoencoder`` group's
:class:`~synthgen.models.autoencoder.AutoencoderModule` on the training split and writes

- ``models_ae/autoencoder.ckpt``: weights, hyperparameters and the latent scale ``1 / std(mu)`` over the
  training images (``mu`` the posterior means), tagged with a cache key (autoencoder config, seed, training
  images' sha256, budget);
- ``models_ae/last.ckpt``: the resume state (:class:`~synthgen.models.checkpoints.ResumeCheckpoint`), keyed like
  the train stage's without the budget, so a killed run, or a raised budget, continues exactly;
- ``models_ae/status.json``: ``{"latent": true, "cache": "hit"|"trained", ...}`` with the reconstruction quality
  of the validation split (L1, PSNR) and the timings.

``models_ae/`` persists between runs (dvc.yaml ``persist: true``): a run whose cache key matches the stored
checkpoint reuses it without training (``"cache": "hit"``). When latent diffusion is off (the default at 28 and
64 px, and for the GAN) the stage writes only ``status.json`` ``{"latent": false, ...}`` and returns at once,
leaving any cached checkpoint in place.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from ..data.prepared import load_split
from ..errors import ConfigError, InputError
from ..io import dumps_json, sha256_file, write_json
from ..models.autoencoder import AutoencoderModule, latent_shape, read_autoencoder, save_autoencoder
from ..models.checkpoints import ResumeCheckpoint, move_aside, resume_state
from ..models.fitting import build_trainer, tensor_dataset, train_loader
from ..models.latent import latent_enabled

log = logging.getLogger(__name__)

#: keys of the ``autoencoder`` group read by the stage, not by the constructor.
AE_STAGE_KEYS = ("batch_size", "max_steps", "max_time")
#: budget keys: part of the cache key, not of the resume key (raising them extends a run).
BUDGET_KEYS = ("max_steps", "max_time")
CHECKPOINT, RESUME, STATUS = "autoencoder.ckpt", "last.ckpt", "status.json"


def _key(ident: dict[str, Any]) -> str:
    return hashlib.sha256(dumps_json(ident).encode()).hexdigest()[:16]


def keys(cfg: DictConfig, train_file: Path) -> tuple[str, str]:
    """``(resume key, cache key)``: the autoencoder config without / with its budget, the seed and the exact
    training images."""
    ae = OmegaConf.to_container(cfg.autoencoder, resolve=True)
    ident = {"autoencoder": {k: v for k, v in ae.items() if k not in BUDGET_KEYS}, "seed": int(cfg.seed),
             "train_sha256": sha256_file(train_file)}
    resume = _key(ident)
    return resume, _key({"resume": resume, "budget": {k: ae.get(k) for k in BUDGET_KEYS}})


def reconstruction(model: AutoencoderModule, images: np.ndarray, max_images: int = 256) -> dict[str, float]:
    """L1 and PSNR (dB, data range 1) of ``decode(encode(x))`` on up to ``max_images`` images in ``[0, 1]``."""
    x = torch.from_numpy(np.ascontiguousarray(images[:max_images])).float()
    if not len(x):
        return {}
    rec = torch.cat([model.decode(model.encode(x[i:i + 64])) for i in range(0, len(x), 64)])
    mse = float((rec - x).pow(2).mean())
    return {"images": int(len(x)), "l1": round(float((rec - x).abs().mean()), 5),
            "psnr_db": round(10 * math.log10(1 / max(mse, 1e-12)), 2)}


def train_autoencoder(cfg: DictConfig) -> dict[str, Any]:
    """Run the stage for a composed config; returns what it wrote to ``status.json``."""
    t_start = time.perf_counter()
    prepared = Path(cfg.paths.prepared)
    out = Path(cfg.paths.autoencoder)
    out.mkdir(parents=True, exist_ok=True)
    train_set = load_split(prepared, "train")
    image_shape = tuple(int(v) for v in train_set.images.shape[1:])
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    if not latent_enabled(model_cfg, image_shape):
        status = {"latent": False, "image_shape": list(image_shape), "model": str(model_cfg.get("name")),
                  "reason": "model.latent is false" if model_cfg.get("latent") is False else
                  "model.latent is null: latent diffusion starts at 128 px with model=ddpm"}
        write_json(out / STATUS, status)
        return status
    if len(train_set) == 0:
        raise InputError(prepared / "train.npz", "no training images")
    ae_cfg = OmegaConf.to_container(cfg.autoencoder, resolve=True)
    latent = latent_shape(image_shape, ae_cfg["channels"], ae_cfg["latent_channels"])  # ConfigError if f ∤ size
    resume, cache = keys(cfg, prepared / "train.npz")
    ckpt_file = out / CHECKPOINT
    if ckpt_file.is_file() and read_autoencoder(ckpt_file)["synthgen"].get("cache_key") == cache:
        meta = read_autoencoder(ckpt_file)["synthgen"]
        status = {"latent": True, "cache": "hit", "image_shape": list(image_shape), "latent_shape": list(latent),
                  "latent_scale": meta["latent_scale"], "global_step": meta.get("global_step"),
                  "validation": meta.get("validation", {}),
                  "stage_seconds": round(time.perf_counter() - t_start, 1)}
        write_json(out / STATUS, status)
        log.info("autoencoder cache hit: %s matches the config and the training images", ckpt_file)
        return status

    if cfg.train.get("num_threads"):
        torch.set_num_threads(int(cfg.train.num_threads))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    kwargs = {k: v for k, v in ae_cfg.items() if k not in AE_STAGE_KEYS and k != "_target_"}
    if ae_cfg.get("_target_") != "synthgen.models.autoencoder.AutoencoderModule":
        raise ConfigError("autoencoder._target_", f"expected synthgen.models.autoencoder.AutoencoderModule, got "
                                                  f"{ae_cfg.get('_target_')}")
    model = AutoencoderModule(image_shape=list(image_shape), **kwargs)
    last = out / RESUME
    state = resume_state(last, resume) if cfg.train.get("resume", True) else None
    ckpt_path, start_step = state if state else (None, 0)
    if state:
        log.info("resuming the autoencoder from %s at global step %d", ckpt_path, start_step)
    elif last.exists():
        log.warning("%s belongs to another config: moved it to %s", last, move_aside(last))
    every_n = cfg.train.get("checkpoint_every_n_batches")
    saver = ResumeCheckpoint(last, resume, every_s=cfg.train.get("checkpoint_every_s", 60),
                             every_n_batches=int(every_n) if every_n else None)
    trainer_cfg = OmegaConf.merge(cfg.trainer, {"max_steps": int(ae_cfg["max_steps"]), "max_epochs": -1,
                                                "max_time": ae_cfg.get("max_time")})
    trainer = build_trainer(trainer_cfg, [saver], out)
    trainer.callbacks.remove(saver)  # after Lightning's Timer (see synthgen/stages/train.py)
    trainer.callbacks.append(saver)
    batch_size = int(ae_cfg["batch_size"])
    workers = int(cfg.train.get("num_workers") or 0)
    val_set = load_split(prepared, "val")
    train_dl = train_loader(train_set.images, train_set.labels, batch_size, int(cfg.seed), workers)
    val_dl = DataLoader(tensor_dataset(val_set.images, val_set.labels), batch_size=min(batch_size, len(val_set)),
                        shuffle=False, num_workers=workers) if len(val_set) else None
    t_fit = time.perf_counter()
    trainer.fit(model, train_dataloaders=train_dl, val_dataloaders=val_dl,
                ckpt_path=str(ckpt_path) if ckpt_path else None)
    fit_s = time.perf_counter() - t_fit
    batches = int(trainer.global_step) - int(start_step)
    status: dict[str, Any] = {}
    if trainer.is_global_zero:
        model.eval()
        t_enc = time.perf_counter()
        mu = model.encode_array(train_set.images)
        std = float(mu.std(dtype=np.float64))
        if not (math.isfinite(std) and std > 0):
            raise InputError(ckpt_file, f"the trained autoencoder's latents have std {std}: training diverged; "
                                        "lower autoencoder.lr")
        validation = reconstruction(model, val_set.images if len(val_set) else train_set.images)
        status = {"latent": True, "cache": "trained", "image_shape": list(image_shape), "latent_shape": list(latent),
                  "latent_scale": round(1.0 / std, 6), "global_step": int(trainer.global_step),
                  "validation": validation, "resumed_from_step": int(start_step),
                  "train_images_per_s": round(batches * batch_size / max(fit_s, 1e-9), 2),
                  "fit_seconds": round(fit_s, 1), "encode_seconds": round(time.perf_counter() - t_enc, 1)}
        save_autoencoder(ckpt_file, model, resume, 1.0 / std,
                         extra={"cache_key": cache, "global_step": int(trainer.global_step),
                                "validation": validation, "config": ae_cfg})
        status["stage_seconds"] = round(time.perf_counter() - t_start, 1)
        write_json(out / STATUS, status)
    trainer.strategy.barrier("autoencoder_stage_done")
    return status
