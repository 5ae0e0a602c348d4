"""Latent diffusion: the class-conditional diffusion model of :mod:`synthgen.models.diffusion` run in the latent
space of the autoencoder stage's :class:`~synthgen.models.autoencoder.AutoencoderModule`.

The switch is ``model.latent`` (``conf/model/ddpm.yaml``): ``null`` = on for 2D images from 128 px up, off
below (and for volumes, whose models choose for themselves); ``true``/``false`` explicit. ``true`` with a model
that is not a diffusion model (the GAN) is a :class:`~synthgen.errors.ConfigError`.

Spaces: the diffusion variable is ``x0 = latent_scale * mu(image)`` ``(latent_channels, H / f, W / f)``, where
``mu`` is the autoencoder's posterior mean and ``latent_scale = 1 / std(mu)`` over the training images (computed
and recorded by the autoencoder stage), so ``x0`` has unit variance as the cosine schedule assumes. Sampling
returns ``decode(x0 / latent_scale)``: images ``(N, C, H, W)`` in ``[0, 1]``, so generate, curate, privacy,
evaluate and export never see a latent. :meth:`LatentDiffusionModule.denoising_error` (loss-based membership
inference) takes pixel images and encodes them first.

The training set is encoded once (:meth:`LatentDiffusionModule.training_inputs`, called by the train stage), so
a training step costs only the latent UNet: the encoder's cost is paid once per image, not once per draw.
The frozen autoencoder is part of the module's ``state_dict``: ``models/generator.ckpt`` decodes by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from .autoencoder import AutoencoderModule, read_autoencoder
from .diffusion import DiffusionModule

#: smallest image side at which ``model.latent: null`` turns latent diffusion on.
AUTO_MIN_SIZE = 128
DIFFUSION_TARGET = "synthgen.models.diffusion.DiffusionModule"


def latent_enabled(model_cfg: Mapping[str, Any], image_shape: Sequence[int]) -> bool:
    """Whether the train stage trains ``model_cfg`` in latent space for images ``image_shape`` ``(C, H, W)``.

    Raises:
        ConfigError: ``model.latent: true`` for a model that is not the diffusion model.
    """
    flag = model_cfg.get("latent")
    is_diffusion = str(model_cfg.get("_target_", "")) == DIFFUSION_TARGET
    if flag is True and not is_diffusion:
        raise ConfigError("model.latent", f"latent diffusion needs model=ddpm, not {model_cfg.get('_target_')}; "
                                          "set model.latent=false or pick model=ddpm")
    if flag is None:
        return is_diffusion and len(image_shape) == 3 and min(int(s) for s in image_shape[1:]) >= AUTO_MIN_SIZE
    return bool(flag)


class LatentDiffusionModule(DiffusionModule):
    """:class:`DiffusionModule` whose UNet denoises autoencoder latents; samples come back decoded.

    Args:
        class_names: class names in label order.
        image_shape: ``(C, H, W)`` of the *images* (the latent shape follows from ``autoencoder``).
        autoencoder: the autoencoder's hyperparameters (``AutoencoderModule(**autoencoder)``; its
            ``image_shape`` must equal ``image_shape``). Its weights come with the state dict.
        latent_scale: ``1 / std`` of the training latents (``x0 = latent_scale * mu``).
        **diffusion: every other :class:`DiffusionModule` argument (UNet widths, schedule, optimizer, seed, ...).
    """

    def __init__(self, class_names: Sequence[str], image_shape: Sequence[int], autoencoder: Mapping[str, Any],
                 latent_scale: float, **diffusion: Any):
        autoencoder = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in dict(autoencoder).items()}
        if [int(s) for s in autoencoder.get("image_shape", [])] != [int(s) for s in image_shape]:
            raise ConfigError("model.image_shape", f"the autoencoder was trained on {autoencoder.get('image_shape')}, "
                                                   f"the images are {list(image_shape)}: re-run the autoencoder stage")
        if not (np.isfinite(latent_scale) and latent_scale > 0):
            raise ConfigError("model.latent_scale", f"must be a finite positive number, got {latent_scale}")
        ae = AutoencoderModule(**autoencoder)
        super().__init__(class_names, ae.latent_shape, **diffusion)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.sample_shape = tuple(ae.latent_shape)
        self.latent_scale = float(latent_scale)
        self.autoencoder = ae.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "LatentDiffusionModule":
        """Lightning switches the module to train mode; the frozen autoencoder stays in eval mode."""
        super().train(mode)
        self.autoencoder.eval()
        return self

    # ------------------------------------------------------------------------------- spaces
    def training_inputs(self, images: np.ndarray) -> np.ndarray:
        """Training images ``(N, C, H, W)`` float in ``[0, 1]`` -> scaled latents ``(N, *sample_shape)`` float32:
        what the train stage's loader hands to :meth:`training_step`."""
        return self.autoencoder.encode_array(images) * np.float32(self.latent_scale)

    def inputs_to_x0(self, inputs: torch.Tensor) -> torch.Tensor:
        """A batch of :meth:`training_inputs` is already ``x0``."""
        return inputs.float()

    def images_to_x0(self, images01: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode(images01) * self.latent_scale

    def x0_to_images(self, x0: torch.Tensor) -> torch.Tensor:
        """Decoded images ``(N, C, H, W)`` in ``[0, 1]`` (NaN rows for a non-finite latent)."""
        return self.autoencoder.decode(x0 / self.latent_scale)


def build_latent_model(kwargs: Mapping[str, Any], class_names: Sequence[str], image_shape: Sequence[int],
                       autoencoder: str | Path) -> LatentDiffusionModule:
    """The latent diffusion model for the ``model`` group's constructor ``kwargs`` (``_target_`` ignored) around
    the autoencoder stage's checkpoint ``autoencoder`` (weights loaded, latent scale from its record).

    Raises:
        InputError: the checkpoint is missing or unreadable (run the autoencoder stage).
        ConfigError: it was trained on images of another shape.
    """
    ckpt = read_autoencoder(autoencoder)
    diffusion = {k: v for k, v in kwargs.items() if k != "_target_"}
    model = LatentDiffusionModule(list(class_names), list(image_shape), autoencoder=ckpt["hyper_parameters"],
                                  latent_scale=float(ckpt["synthgen"]["latent_scale"]), **diffusion)
    model.autoencoder.load_state_dict(ckpt["state_dict"])
    return model
