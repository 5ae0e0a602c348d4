"""Denoising-error membership inference for the privacy stage: which generator made the cohort, and its error.

The generate stage records in ``data/generated/cohort.json`` the generator's class (``model_target``), the
checkpoint it sampled from (``checkpoint``) and that file's SHA-256. When the class is a diffusion model (it
has ``denoising_error``), the stage rebuilds it exactly as generate does
(:func:`synthgen.models.checkpoints.load_generator`), after checking that the checkpoint is still the one
that produced the cohort, and the audit runs the loss attack (:func:`synthgen.privacy.membership.loss_attack`)
on training members vs reference non-members (class-matched). GANs have no denoising error: the attack is
reported as not applicable (the distance-based attack still runs for every generator).

Settings (``privacy.mia_loss``): ``enabled``, ``timesteps`` (fixed, averaged per image), ``max_samples``
(members and non-members each; the reference size caps it), ``batch`` (images per network call).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError, InputError
from ..io import sha256_file
from .membership import ErrorFn, denoising_error_fn


def _not_applicable(reason: str, **extra: Any) -> tuple[None, dict[str, Any]]:
    return None, {"attack": "loss", "applicable": False, "reason": reason, **extra}


def _generator_class(target: str, meta_path: Path) -> type:
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise InputError(meta_path, f"model_target {target!r} cannot be imported: {e}") from None


def loss_error_fn(gen_meta: Mapping[str, Any], cfg: Mapping[str, Any], seed: int,
                  meta_path: str | Path = "data/generated/cohort.json") -> tuple[ErrorFn | None, dict[str, Any]]:
    """The denoising-error function of the generator that made a cohort, or why there is none.

    Args:
        gen_meta: the generated cohort's ``cohort.json`` (``generator``, ``model_target``, ``checkpoint``,
            ``checkpoint_sha256``).
        cfg: the ``privacy.mia_loss`` group (``enabled``, ``timesteps``, ``max_samples``, ``batch``).
        seed: seeds the noise draws (``privacy.seed``).
        meta_path: where ``gen_meta`` came from (error messages).

    Returns:
        ``(error_fn, info)``: ``error_fn(images01 (N, C, H, W) in [0, 1], labels (N,)) -> (N,)`` mean
        noise-prediction error over the timesteps, or ``None`` when the attack does not apply; ``info`` is
        recorded in the report (``applicable``, ``reason`` or ``generator``/``checkpoint``/``timesteps``).

    Raises:
        InputError: the recorded checkpoint is missing, unreadable or no longer the one that made the cohort.
        ConfigError: a timestep outside the model's ``[0, T)``.
    """
    meta_path = Path(meta_path)
    if not bool(cfg.get("enabled", True)):
        return _not_applicable("disabled (privacy.mia_loss.enabled=false)")
    target, ckpt = gen_meta.get("model_target"), gen_meta.get("checkpoint")
    generator = str(gen_meta.get("generator", "unknown"))
    if not target or not ckpt:
        return _not_applicable("the cohort records no generator checkpoint (model_target, checkpoint)",
                               generator=generator)
    if not hasattr(_generator_class(str(target), meta_path), "denoising_error"):
        return _not_applicable(f"{generator} ({target}) is not a diffusion model: it has no denoising error",
                               generator=generator)
    from ..models.checkpoints import load_generator

    path = Path(str(ckpt))
    if not path.is_file():
        raise InputError(path, f"checkpoint recorded in {meta_path} not found: the loss attack needs the model "
                               "that generated the cohort (re-run train and generate)")
    want = gen_meta.get("checkpoint_sha256")
    got = sha256_file(path)
    if want and got != want:
        raise InputError(path, f"sha256 {got[:12]}... differs from {str(want)[:12]}... recorded in {meta_path}: "
                               "the checkpoint changed after generation (re-run generate)")
    model, _ = load_generator(path)
    n_t = int(model.schedule.num_timesteps) if hasattr(model, "schedule") else None
    timesteps = tuple(int(t) for t in cfg.get("timesteps", (50, 200, 500)))
    if not timesteps or (n_t is not None and not all(0 <= t < n_t for t in timesteps)):
        raise ConfigError("privacy.mia_loss.timesteps", f"need timesteps in [0, {n_t}), got {list(timesteps)}")
    fn = denoising_error_fn(model, timesteps, seed, int(cfg.get("batch", 256)))
    return fn, {"attack": "loss", "applicable": True, "generator": generator, "model_target": str(target),
                "checkpoint": str(path), "checkpoint_sha256": got, "timesteps": list(timesteps)}
