"""Class-conditional diffusion model (``model=ddpm``) as a Lightning module.

Training (images in ``[0, 1]`` from the data loader, mapped to ``[-1, 1]``): draw ``t ~ U{0..T-1}``,
``eps ~ N(0, I)``, form ``x_t`` with the cosine schedule and regress the network output on the
prediction target (``eps`` or ``v``, :mod:`synthgen.sampling.schedule`) with a mean squared error. A share
``label_dropout`` of labels is replaced by the null class so that the same network is also the
unconditional model that classifier-free guidance needs.

Label dropout and rare classes (issue 14 review; kept as it is): the drop is drawn per sample of the batch the
loader hands out, i.e. *after* ``train.class_balance`` has chosen the classes, with the same probability for
every class. Consequences: (1) a class loses the same share of its conditional updates whatever its size, and
class balancing raises the rare class's conditional updates by the same factor it raises its draws (with
``class_balance=0.5`` and 40 basophils among 11 147 images: 0.36% -> 2.3% of draws), so per-class dropout rates are not
needed to protect the rare class; (2) the unconditional branch learns the *drawn* mixture (tempered), not the
data frequencies. Guidance contrasts ``cond(c)`` with that branch, so with balancing it pushes away from a
mixture in which the rare class already has more weight, i.e. a little less hard away from ``c``'s neighbours
than with the data mixture; that is the intended direction for a rare class that shares features with its
neighbours. Dropping labels *before* balancing (per image of the data) would leave the unconditional branch on
the data mixture, but needs a second loader stream and was not measured, so it is not done.

Weights: ``net`` is trained with AdamW (linear warm-up, then constant); ``ema_net`` is an exponential moving
average of it, updated after every optimizer step with decay ``min(ema_decay, (1 + n) / (10 + n))``
(``n`` = optimizer steps so far, so early averages are not dominated by the random init). Both live in the
module's ``state_dict``: the checkpoint holds the EMA weights that sampling and :meth:`denoising_error` use
and the raw weights and optimizer state that make a resumed run continue exactly.

bf16: with ``autocast=True`` every network call runs under ``torch.autocast(bfloat16)`` (on CPUs with
AVX-512-BF16/AMX this roughly doubles convolution throughput, see ``benchmarks/cases/unet.py``); ``"auto"``
(the config default) does so only where the device has bf16 natively (:mod:`synthgen.precision`: an AVX2-only
CPU emulates it ~13x slower than float32). The loss, the EMA and all sampler arithmetic stay in float32.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..precision import bf16_setting, use_bf16
from ..sampling import CosineSchedule, get_sampler, guided_denoiser
from .base import GeneratorModule, seeded_noise
from .distributed import batch_slice, draw_rows
from .unet import ClassConditionalUNet


class DiffusionModule(GeneratorModule):
    """Class-conditional DDPM with an attention-free UNet, EMA weights and classifier-free guidance.

    Args:
        class_names: class names in label order (``K`` classes; label ``K`` is the null class).
        image_shape: ``(C, H, W)`` of the training images, or ``(C, D, H, W)`` of training volumes (the UNet
            then runs with ``spatial_dims=3``; every sampler, the seeded noise and guidance are shape-generic,
            so ``generate`` returns ``(N, C, D, H, W)``).
        channels, blocks_per_level, emb_dim, dropout: :class:`~synthgen.models.unet.ClassConditionalUNet`.
        prediction_type: ``"v_prediction"`` (default) or ``"epsilon"``.
        num_timesteps: training timesteps ``T`` of the cosine schedule.
        label_dropout: probability of training a sample with the null label (for guidance).
        lr, weight_decay, warmup_steps, adam_betas: AdamW with a linear warm-up over ``warmup_steps``.
        ema_decay: decay of the weight EMA used for sampling.
        autocast: run the network under bf16 autocast: ``True``, ``False`` or ``"auto"`` (where the device has
            bf16 natively, resolved per call from the tensors' device: a checkpoint trained on a GPU samples in
            float32 on an AVX2 CPU).
        max_batch: largest batch one network call sees in :meth:`generate` (memory bound only).
        seed: seeds the training noise: training batch ``b`` draws its timesteps, noise and label dropout for
            the global batch from a CPU generator seeded by ``(seed, "noise", b)`` and each DDP rank keeps its
            rows (:meth:`~synthgen.models.base.GeneratorModule.training_generator`; ``b`` is checkpointed), and
            UNet dropout from the global RNG reseeded by ``(seed, "global", r, b)``: never from leftover
            global RNG state or Lightning's batch index, so a resumed run draws what an uninterrupted one drew.
        name: generator name recorded in the generated cohort's metadata.
    """

    def __init__(self, class_names: Sequence[str], image_shape: Sequence[int],
                 channels: Sequence[int] = (32, 64, 64), blocks_per_level: int = 1, emb_dim: int | None = None,
                 dropout: float = 0.0, prediction_type: str = "v_prediction", num_timesteps: int = 1000,
                 label_dropout: float = 0.1, lr: float = 2e-3, weight_decay: float = 0.0,
                 warmup_steps: int = 100, adam_betas: Sequence[float] = (0.9, 0.99), ema_decay: float = 0.995,
                 autocast: bool | str = "auto", max_batch: int = 512, seed: int = 0, name: str = "ddpm"):
        super().__init__()
        # Plain Python values only (Hydra passes ListConfig): checkpoints must load with weights_only=True.
        class_names = [str(c) for c in class_names]
        image_shape = [int(s) for s in image_shape]
        channels = [int(c) for c in channels]
        adam_betas = [float(b) for b in adam_betas]
        autocast = bf16_setting(autocast, "model.autocast")
        if len(image_shape) not in (3, 4) or min(image_shape) < 1:
            raise ConfigError("model.image_shape", f"expected (C, H, W) or (C, D, H, W), got {image_shape}")
        if len(class_names) < 1 or len(set(class_names)) != len(class_names):
            raise ConfigError("model.class_names", f"need distinct class names, got {class_names}")
        if not 0.0 <= label_dropout < 1.0:
            raise ConfigError("model.label_dropout", f"must be in [0, 1), got {label_dropout}")
        self.save_hyperparameters()
        self.class_names = class_names
        self.image_shape = tuple(image_shape)
        #: shape of the diffusion variable ``x0`` (the image here; the latent in
        #: :class:`~synthgen.models.latent.LatentDiffusionModule`).
        self.sample_shape = tuple(image_shape)
        self.null_label = len(class_names)
        self.schedule = CosineSchedule(num_timesteps, prediction_type)
        self.net = ClassConditionalUNet(image_shape[0], len(class_names), channels, blocks_per_level,
                                        emb_dim, dropout, spatial_dims=len(image_shape) - 1)
        self.ema_net = copy.deepcopy(self.net).requires_grad_(False)
        self.sampling_kwargs: dict[str, Any] = {}

    # ----------------------------------------------------------------------------------------- network
    def _predict(self, net: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Network output ``(N, C, H, W)`` float32 (bf16 autocast inside when enabled)."""
        bf16 = use_bf16(self.hparams.autocast, x.device.type)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
            return net(x, t, y).float()

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Raw (training) network prediction for ``x`` ``(N, C, H, W)`` in ``[-1, 1]``-scale, ``t``, ``y`` ``(N,)``."""
        return self._predict(self.net, x, t, y)

    def class_index(self, name: str) -> int:
        """Label of class ``name``; an unknown name raises :class:`ConfigError` listing the known ones."""
        if name not in self.class_names:
            raise ConfigError("generate.counts", f"unknown class {name!r}; classes are {', '.join(self.class_names)}")
        return self.class_names.index(name)

    # ---------------------------------------------------------------- the space the diffusion runs in
    def inputs_to_x0(self, inputs: torch.Tensor) -> torch.Tensor:
        """A training/validation batch -> ``x0`` ``(N, *sample_shape)``: images in ``[0, 1]`` -> ``[-1, 1]``."""
        return inputs.float() * 2 - 1

    def images_to_x0(self, images01: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, H, W)`` in ``[0, 1]`` -> ``x0`` (here the same map as :meth:`inputs_to_x0`)."""
        return images01.float() * 2 - 1

    def x0_to_images(self, x0: torch.Tensor) -> torch.Tensor:
        """Sampled ``x0`` -> images ``(N, C, H, W)`` in ``[0, 1]``; clamp maps +-inf into range, so every
        non-finite pixel is kept NaN for the generate stage's check."""
        img = (x0.clamp(-1, 1) + 1) / 2
        return torch.where(torch.isfinite(x0), img, torch.nan)

    # ---------------------------------------------------------------------------------------- training
    @staticmethod
    def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(batch, Mapping):
            return batch["images"], batch["labels"]
        images, labels = batch[0], batch[1]
        return images, labels

    def diffusion_loss(self, images01: torch.Tensor, labels: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                       net: torch.nn.Module | None = None) -> torch.Tensor:
        """Per-sample MSE ``(N,)`` of the prediction target for images ``(N, C, H, W)`` in ``[0, 1]``."""
        x0 = self.inputs_to_x0(images01)
        x_t = self.schedule.add_noise(x0, eps, t)
        out = self._predict(net if net is not None else self.net, x_t, t, labels)
        return F.mse_loss(out, self.schedule.target(x0, eps, t), reduction="none").flatten(1).mean(1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = self._unpack(batch)
        n, dev = images.shape[0], images.device
        g = self.training_generator("noise")  # CPU draws: the same values on any device, resumable
        sl = batch_slice(n)  # draws for the global batch, this rank's rows (all of them with one process)
        t = draw_rows((n,), sl, lambda s: torch.randint(0, self.schedule.num_timesteps, s, generator=g)).to(dev)
        eps = draw_rows(tuple(images.shape), sl, lambda s: torch.randn(s, generator=g)).to(dev)
        drop = (draw_rows((n,), sl, lambda s: torch.rand(s, generator=g)) < self.hparams.label_dropout).to(dev)
        labels = torch.where(drop, torch.full_like(labels, self.null_label), labels.long())
        loss = self.diffusion_loss(images, labels, t, eps).mean()
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=n,
                 sync_dist=sl.rows is not None)  # DDP: the global batch's mean loss
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """EMA-weight loss on fixed noise and timesteps (seeded by batch index): comparable across epochs."""
        images, labels = self._unpack(batch)
        n = images.shape[0]
        seeds = torch.arange(n, dtype=torch.long) + batch_idx * 1_000_000
        eps = seeded_noise(seeds, images.shape[1:], device=images.device)
        g = torch.Generator().manual_seed(batch_idx)
        t = torch.randint(0, self.schedule.num_timesteps, (n,), generator=g).to(images.device)
        loss = self.diffusion_loss(images, labels.long(), t, eps, net=self.ema_net).mean()
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, batch_size=n)
        return loss

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        opt = torch.optim.AdamW(self.net.parameters(), lr=hp.lr, betas=tuple(hp.adam_betas),
                                weight_decay=hp.weight_decay)
        warmup = max(1, int(hp.warmup_steps))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimizer step, then the EMA update. Here rather than in ``on_train_batch_end``: Lightning runs
        the module's ``on_train_batch_end`` after the callbacks' (where the resume checkpoint is written), so a
        checkpoint would miss that batch's EMA update; this also updates once per optimizer step when
        gradients are accumulated."""
        super().optimizer_step(*args, **kwargs)
        self.update_ema(self.global_step + 1)  # Lightning counts this step only after the hook returns

    @torch.no_grad()
    def update_ema(self, n: int | None = None) -> None:
        """``ema <- d * ema + (1 - d) * net`` with ``d = min(ema_decay, (1 + n) / (10 + n))``, ``n`` the optimizer
        steps taken so far (default ``global_step``)."""
        n = self.global_step if n is None else int(n)
        d = min(float(self.hparams.ema_decay), (1 + n) / (10 + n))
        ema = list(self.ema_net.parameters()) + list(self.ema_net.buffers())
        cur = list(self.net.parameters()) + list(self.net.buffers())
        for e, c in zip(ema, cur):
            if e.dtype.is_floating_point:
                e.lerp_(c.detach(), 1 - d)
            else:
                e.copy_(c)

    # --------------------------------------------------------------------------------------- sampling
    def _check(self, labels: Any, seeds: Any) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1).cpu()
        seeds = torch.as_tensor(seeds, dtype=torch.long).reshape(-1).cpu()
        if labels.shape != seeds.shape:
            raise ValueError(f"labels {tuple(labels.shape)} and seeds {tuple(seeds.shape)} differ in length")
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must be in [0, {len(self.class_names)}), got {labels.min()}..{labels.max()}")
        return labels, seeds

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, seeds: torch.Tensor, sampler: str = "dpmpp", steps: int = 10,
                 guidance: float = 1.0, use_ema: bool = True) -> torch.Tensor:
        """Sample images for ``labels`` ``(N,)`` and ``seeds`` ``(N,)``.

        Args:
            sampler: ``"dpmpp"`` (DPM-Solver++(2M)), ``"ddim"`` or ``"ddpm"`` (ancestral).
            steps: sampler steps, ``1..T`` (``dpmpp``: at most ``dpmpp_max_steps``, 995 for ``T = 1000``).
            guidance: classifier-free guidance scale, finite ``g >= 0`` (0 unconditional, 1 conditional).
            use_ema: sample with the EMA weights (default) or the raw training weights.

        Returns:
            ``(N, C, H, W)`` (volumes: ``(N, C, D, H, W)``) float32 in ``[0, 1]`` on CPU; row ``i`` depends only on ``labels[i]``,
            ``seeds[i]``, the sampling arguments and the weights (initial latent =
            ``seeded_noise(seeds, stream=0)``, sampler noise of step ``k`` = stream ``k + 1``). The samplers'
            arithmetic cannot create a NaN (see :mod:`synthgen.sampling.ddim`); a non-finite network output
            comes back as NaN (also an ``inf``, which ``clamp`` alone would hide) so that the generate stage
            can name the sample.

        Raises:
            ConfigError: an unknown sampler, ``steps`` out of range or a negative/non-finite ``guidance``.
        """
        sample = get_sampler(sampler)
        labels, seeds = self._check(labels, seeds)
        net = self.ema_net if use_ema else self.net
        was_training = net.training
        net.eval()
        device = self.device
        chunks = []
        try:
            for lo in range(0, labels.numel(), int(self.hparams.max_batch)):
                lab = labels[lo:lo + int(self.hparams.max_batch)]
                sd = seeds[lo:lo + int(self.hparams.max_batch)]
                x_T = seeded_noise(sd, self.sample_shape, device=device, stream=0)
                denoise = guided_denoiser(lambda x, t, y: self._predict(net, x, t, y), lab.to(device),
                                          self.null_label, guidance)
                x0 = sample(denoise, x_T, self.schedule, steps, sd)
                chunks.append(self.x0_to_images(x0).float().cpu())
        finally:
            net.train(was_training)
        if not chunks:
            return torch.empty((0, *self.image_shape))
        return torch.cat(chunks)

    @torch.no_grad()
    def denoising_error(self, images01: torch.Tensor, labels: torch.Tensor, timesteps: torch.Tensor,
                        seeds: torch.Tensor, use_ema: bool = True) -> torch.Tensor:
        """Per-sample noise-prediction error ``(N,)`` float32 (loss-based membership inference).

        For images ``(N, C, H, W)`` in ``[0, 1]``, labels and integer ``timesteps`` ``(N,)`` in ``[0, T)``:
        ``mean((eps_hat(x_t, t, y) - eps)^2)`` over pixels, with ``eps = seeded_noise(seeds, stream=0)``
        and ``eps_hat`` the (EMA) network's noise estimate (converted from v when ``prediction_type`` is v),
        so the score is comparable across prediction types. Training members tend to score lower.
        """
        labels, seeds = self._check(labels, seeds)
        timesteps = torch.as_tensor(timesteps, dtype=torch.long).reshape(-1)
        if timesteps.shape != labels.shape:
            raise ValueError("timesteps must have one entry per image")
        if timesteps.numel() and (timesteps.min() < 0 or timesteps.max() >= self.schedule.num_timesteps):
            raise ValueError(f"timesteps must be in [0, {self.schedule.num_timesteps})")
        net = self.ema_net if use_ema else self.net
        was_training = net.training
        net.eval()
        device = self.device
        try:
            x0 = self.images_to_x0(images01.to(device))
            eps = seeded_noise(seeds, x0.shape[1:], device=device, stream=0)
            t = timesteps.to(device)
            x_t = self.schedule.add_noise(x0, eps, t)
            eps_hat = self.schedule.predict_eps(x_t, self._predict(net, x_t, t, labels.to(device)), t)
            return (eps_hat - eps).pow(2).flatten(1).mean(1).float().cpu()
        finally:
            net.train(was_training)
