"""The latent-diffusion autoencoder (``conf/autoencoder``): MONAI's ``AutoencoderKL`` as a Lightning module.

MONAI's network was chosen over diffusers' ``AutoencoderKL`` by ``benchmarks/latent_autoencoder.py`` (result in
``docs/latent.md``); it also builds the 3D variant (``spatial_dims=3``) from the same code, which the volume
models need. Attention is off (no non-local blocks): at 32 x 32 latents on a CPU it costs more than it gives.

Shapes: images ``(N, C, H, W)`` (or ``(N, C, D, H, W)``) in ``[0, 1]``; each of the ``len(channels) - 1``
downsamplings halves every spatial side, so the latent is ``(latent_channels, H / f, W / f)`` with
``f = 2 ** (len(channels) - 1)`` (``channels = [32, 64, 64]``: ``f = 4``, 128 px -> 4 x 32 x 32).

Training: the network sees ``x = 2 * image - 1``; the loss is ``L1(decode(z), x) + kl_weight * KL`` with
``z = mu + sigma * eps`` (reparameterized draw) and ``KL = 0.5 * sum(mu^2 + sigma^2 - 2 log sigma - 1)`` per
image, averaged over the batch; no perceptual or adversarial term (no pretrained weights may be downloaded
here, and at a small KL weight the L1 term alone keeps the latents informative). ``eps`` of training batch
``b`` is drawn from the ``(seed, "posterior", rank, b)`` generator of :class:`~synthgen.models.base.SeededModule`,
whose batch counter is checkpointed, so a resumed run continues exactly.

Encoding for diffusion is deterministic: :meth:`AutoencoderModule.encode` returns the posterior mean ``mu``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__
from ..errors import ConfigError, InputError
from ..io import atomic_path
from ..precision import bf16_setting, use_bf16
from .base import SeededModule
from .checkpoints import class_path
from .distributed import batch_slice, draw_rows


def downsampling_factor(channels: Sequence[int]) -> int:
    """``f = 2 ** (len(channels) - 1)``: the side of the image over the side of the latent."""
    return 2 ** (len(channels) - 1)


def latent_shape(image_shape: Sequence[int], channels: Sequence[int], latent_channels: int) -> tuple[int, ...]:
    """``(latent_channels, *spatial / f)`` for ``image_shape`` ``(C, H, W)`` or ``(C, D, H, W)``.

    Raises:
        ConfigError: a spatial side is not divisible by ``f`` (the decoder could not give the size back).
    """
    f = downsampling_factor(channels)
    spatial = [int(s) for s in image_shape[1:]]
    if any(s % f for s in spatial):
        raise ConfigError("autoencoder.channels", f"{len(channels)} levels downsample by f={f}, but the image size "
                                                  f"{'x'.join(map(str, spatial))} is not divisible by {f}: pick "
                                                  f"another data.image_size or fewer autoencoder levels")
    return (int(latent_channels), *(s // f for s in spatial))


class AutoencoderModule(SeededModule):
    """KL-regularized autoencoder (MONAI ``AutoencoderKL``, no attention) for 2D or 3D images.

    Args:
        image_shape: ``(C, H, W)`` or ``(C, D, H, W)`` of the training images.
        channels: widths per level; ``len(channels) - 1`` downsamplings by 2.
        latent_channels: channels of the latent.
        num_res_blocks: residual blocks per level.
        norm_num_groups: GroupNorm groups (must divide every width).
        kl_weight: weight of the KL term.
        lr, adam_betas: AdamW (constant learning rate).
        autocast: run the network under bf16 autocast (loss in float32): ``True``, ``False`` or ``"auto"``
            (where the device has bf16 natively, :mod:`synthgen.precision`).
        seed: seeds the posterior draws (``(seed, "posterior", rank, batch)``).
    """

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int] = (32, 64, 64), latent_channels: int = 4,
                 num_res_blocks: int = 1, norm_num_groups: int = 16, kl_weight: float = 1e-6, lr: float = 1e-3,
                 adam_betas: Sequence[float] = (0.9, 0.99), autocast: bool | str = "auto", seed: int = 0):
        super().__init__()
        image_shape = [int(s) for s in image_shape]
        channels = [int(c) for c in channels]
        adam_betas = [float(b) for b in adam_betas]
        autocast = bf16_setting(autocast, "autoencoder.autocast")
        if len(image_shape) not in (3, 4):
            raise ConfigError("autoencoder", f"expected image_shape (C, H, W) or (C, D, H, W), got {image_shape}")
        if any(c % int(norm_num_groups) for c in channels):
            raise ConfigError("autoencoder.norm_num_groups", f"{norm_num_groups} does not divide every width of "
                                                             f"autoencoder.channels {channels}")
        self.latent_shape = latent_shape(image_shape, channels, latent_channels)
        self.save_hyperparameters()
        self.image_shape = tuple(image_shape)
        from monai.networks.nets import AutoencoderKL

        self.net = AutoencoderKL(spatial_dims=len(image_shape) - 1, in_channels=image_shape[0],
                                 out_channels=image_shape[0], channels=channels, num_res_blocks=int(num_res_blocks),
                                 attention_levels=[False] * len(channels), latent_channels=int(latent_channels),
                                 norm_num_groups=int(norm_num_groups), with_encoder_nonlocal_attn=False,
                                 with_decoder_nonlocal_attn=False)

    def _autocast(self, x: torch.Tensor) -> torch.autocast:
        return torch.autocast(device_type=x.device.type, dtype=torch.bfloat16,
                              enabled=use_bf16(self.hparams.autocast, x.device.type))

    # ------------------------------------------------------------------------------------------ codec
    @torch.no_grad()
    def encode(self, images01: torch.Tensor) -> torch.Tensor:
        """Posterior means ``(N, *latent_shape)`` float32 of images ``(N, *image_shape)`` in ``[0, 1]``."""
        x = images01.to(self.device).float() * 2 - 1
        with self._autocast(x):
            mu, _ = self.net.encode(x)
        return mu.float()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images ``(N, *image_shape)`` float32 in ``[0, 1]`` from latents ``(N, *latent_shape)``; a row whose
        latent or output holds a non-finite value comes back all NaN (the generate stage names it)."""
        z = z.to(self.device).float()
        with self._autocast(z):
            x = self.net.decode(torch.nan_to_num(z)).float()
        img = ((x.clamp(-1, 1) + 1) / 2)
        bad = ~(torch.isfinite(z).flatten(1).all(1) & torch.isfinite(x).flatten(1).all(1))
        return torch.where(bad.view(-1, *([1] * (img.dim() - 1))), torch.nan, img)

    def encode_array(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """:meth:`encode` over a whole array ``(N, *image_shape)`` (float in ``[0, 1]``) in batches;
        ``(N, *latent_shape)`` float32. Rows do not depend on the batching (eval mode, GroupNorm per image)."""
        was = self.training
        self.eval()
        try:
            out = [self.encode(torch.from_numpy(np.ascontiguousarray(images[i:i + batch]))).cpu().numpy()
                   for i in range(0, len(images), batch)]
        finally:
            self.train(was)
        return np.concatenate(out) if out else np.zeros((0, *self.latent_shape), np.float32)

    # --------------------------------------------------------------------------------------- training
    def loss(self, images01: torch.Tensor, eps: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L1, KL)`` of a batch; ``eps`` ``(N, *latent_shape)`` draws the posterior (None: its mean)."""
        x = images01.float() * 2 - 1
        with self._autocast(x):
            mu, sigma = self.net.encode(x)
            z = mu if eps is None else mu + sigma * eps.to(mu.dtype)
            rec = self.net.decode(z)
        mu, sigma = mu.float(), sigma.float().clamp_min(1e-6)
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - 2 * sigma.log() - 1).flatten(1).sum(1).mean()
        return F.l1_loss(rec.float(), x), kl

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images = batch[0]
        n = images.shape[0]
        g = self.training_generator("posterior")
        sl = batch_slice(n)  # DDP: the posterior draws of the global batch, this rank's rows (all with one process)
        eps = draw_rows((n, *self.latent_shape), sl, lambda s: torch.randn(s, generator=g))
        l1, kl = self.loss(images, eps.to(images.device))
        loss = l1 + float(self.hparams.kl_weight) * kl
        sync = sl.rows is not None  # DDP: log the global batch's mean
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=n, sync_dist=sync)
        self.log("train/l1", l1, on_step=True, on_epoch=True, batch_size=n, sync_dist=sync)
        self.log("train/kl", kl, on_step=True, on_epoch=True, batch_size=n, sync_dist=sync)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        l1, _ = self.loss(batch[0], None)
        self.log("val/l1", l1, prog_bar=True, on_epoch=True, batch_size=batch[0].shape[0])
        return l1

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.AdamW(self.net.parameters(), lr=float(hp.lr), betas=tuple(hp.adam_betas))


# ------------------------------------------------------------------------------------------ checkpoint
def save_autoencoder(path: str | os.PathLike, model: AutoencoderModule, key: str, scale: float,
                     extra: dict[str, Any] | None = None) -> Path:
    """Write the autoencoder checkpoint (atomic): weights, hyperparameters and the synthgen block
    ``{"target", "resume_key", "image_shape", "latent_shape", "latent_scale", "version", ...extra}``."""
    ckpt = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "hyper_parameters": dict(model.hparams), "pytorch-lightning_version": L.__version__,
            "synthgen": {"target": class_path(model), "resume_key": key,
                         "image_shape": [int(v) for v in model.image_shape],
                         "latent_shape": [int(v) for v in model.latent_shape], "latent_scale": float(scale),
                         "version": __version__, **(extra or {})}}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def read_autoencoder(path: str | os.PathLike) -> dict[str, Any]:
    """The stored checkpoint dict (``state_dict``, ``hyper_parameters``, ``synthgen``).

    Raises:
        InputError: missing, unreadable or not an autoencoder checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "autoencoder checkpoint not found: run the autoencoder stage first "
                               "(dvc repro autoencoder)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds on a damaged or foreign file
        raise InputError(path, f"not a readable torch checkpoint ({type(e).__name__}: {str(e)[:120]})") from None
    meta = ckpt.get("synthgen") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or "latent_scale" not in meta:
        raise InputError(path, "not a synthgen autoencoder checkpoint (no 'synthgen.latent_scale' entry)")
    return ckpt


def load_autoencoder(path: str | os.PathLike) -> tuple[AutoencoderModule, dict[str, Any]]:
    """``(model in eval mode, its synthgen block)`` from :func:`save_autoencoder`'s file."""
    ckpt = read_autoencoder(path)
    model = AutoencoderModule(**ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt["synthgen"]
