"""``model=cgan``: class-conditional GAN as a Lightning module (manual optimization).

Training (one batch = one discriminator step then one generator step, so Lightning's ``global_step``
advances by 2 per batch; budget with ``trainer.max_time``/``max_epochs``):

    L_D = E[relu(1 - D(T(x), y))] + E[relu(1 + D(T(G(z, y)), y))]       (hinge loss)
    L_G = -E[D(T(G(z, y)), y)] + lambda_div / (E|G(z1, y) - G(z2, y)| / E|z1 - z2| + eps)

with ``T`` the DiffAugment policy, ``y`` the real batch's labels, ``z ~ N(0, I)``. The last term is the
mode-seeking loss (Mao et al. 2019, MSGAN) against within-class mode collapse: the fake batch is built as
pairs that share a label (``y_fake = [y[:n/2], y[:n/2]]``), and the generator is rewarded for mapping
different latents of one class to different images. ``lambda_div = diversity_weight`` (0 = off). After each generator step
an exponential moving average of the generator weights is updated (the discriminator is not averaged);
sampling uses the EMA generator in eval mode with BatchNorm statistics recomputed for the EMA weights
(:meth:`prepare_for_sampling`).

Randomness: training batch ``b`` draws its latents from the CPU generator of stream ``"latent"`` and its
DiffAugment transforms from stream ``"augment"``, both seeded by ``(seed, stream, b)``
(:meth:`~synthgen.models.base.GeneratorModule.training_generator`, ``b`` checkpointed): a run resumed from any
batch boundary draws what the uninterrupted run drew.

DDP (:mod:`synthgen.models.distributed`): ``W`` processes with ``B / W`` real images each train as one process
with ``B``, up to float summation order. The real labels are gathered so that every rank builds the global fake
batch (the mode-seeking pairs included) and keeps its share of it (:meth:`fake_plan`); latents and DiffAugment
transforms are drawn for the global real and fake batches and sliced; the generator's BatchNorm statistics are
over the global batch (:class:`~synthgen.models.distributed.DistBatchNorm2d`, CPU and GPU); the mode-seeking
ratio's means are all-reduced. Not global: the discriminator's minibatch-stddev feature (``mbstd_group > 0``)
groups images within a rank.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..precision import bf16_setting, use_bf16
from .base import GeneratorModule, seeded_noise
from .diffaugment import diff_augment, parse_policy
from .distributed import BatchSlice, RowDraws, all_reduce_sum, batch_slice, draw_rows, gather_global, world
from .gan_nets import Generator, ProjectionDiscriminator

log = logging.getLogger(__name__)


def mode_seeking_ratio(x1: torch.Tensor, x2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """MSGAN's ratio ``mean|x1 - x2| / mean|z1 - z2|`` (scalar, >= 0) for image pairs ``(M, C, H, W)`` made
    from latent pairs ``(M, Z)`` of the same class; small values mean the latents collapse to one image."""
    return (x1 - x2).abs().mean() / (z1 - z2).abs().mean().clamp_min(1e-8)


class ConditionalGAN(GeneratorModule):
    """Projection-discriminator cGAN with hinge loss, DiffAugment and generator EMA.

    Args:
        class_names: class names in label order (from ``data/prepared/meta.json``).
        image_shape: ``(C, H, W)``, square, ``H = b * 2**k`` with ``b >= 4``.
        z_dim: latent size.
        g_width, d_width: channel width of the last generator / first discriminator block (channels double
            at each coarser resolution up to ``width_cap``); from the size preset when null in the YAML.
        embed_dim: class embedding concatenated to ``z``.
        lr_g, lr_d: Adam learning rates; ``betas`` Adam betas.
        ema_decay: EMA decay of the generator weights (warm-up ``min(decay, (1 + n) / (10 + n))``).
        diffaugment: comma-separated DiffAugment policy (``"color,translation,cutout"``; ``""`` = none).
        standing_stats_batches: batches of 128 seeded samples used to recompute the EMA generator's
            BatchNorm statistics before sampling.
        diversity_weight: weight of the mode-seeking loss (0 = off).
        hierarchical_z: BigGAN's split latent: a chunk of ``z`` with the class embedding conditions each
            generator block's norms (else the class index alone does).
        mbstd_group: group size of the discriminator's minibatch-stddev feature (0 = off).
        autocast: run G and D under bf16 autocast while training (weights, optimizer state and the EMA
            stay float32; sampling runs in float32): ``True``, ``False`` or ``"auto"`` (where the device has
            bf16 natively, :mod:`synthgen.precision`).
        width_cap: the widest block has at most ``width * width_cap`` channels (64 px and up; 28 px never
            reaches it; :func:`~synthgen.models.gan_nets.block_widths`).
        seed: seeds the training draws (latents, DiffAugment); see the module docstring.
    """

    def __init__(self, class_names: Sequence[str], image_shape: Sequence[int], z_dim: int = 64,
                 g_width: int = 32, d_width: int = 32, embed_dim: int = 32, lr_g: float = 2e-4,
                 lr_d: float = 4e-4, betas: Sequence[float] = (0.0, 0.99), ema_decay: float = 0.999,
                 diffaugment: str = "color,translation", standing_stats_batches: int = 16,
                 diversity_weight: float = 0.05, autocast: bool | str = "auto", mbstd_group: int = 0,
                 hierarchical_z: bool = True, width_cap: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.class_names = [str(c) for c in class_names]
        if len(image_shape) != 3:
            raise ConfigError("model._target_", f"the GAN is 2D only and the prepared data are volumes "
                                                f"{tuple(int(v) for v in image_shape)}: use model=ddpm for data.dims=3")
        c, h, w = (int(v) for v in image_shape)
        if h != w:
            raise ValueError(f"the GAN needs square images, got {h}x{w}")
        self.image_shape = (c, h, w)
        parse_policy(diffaugment)
        self.save_hyperparameters({"class_names": self.class_names, "image_shape": list(self.image_shape),
                                   "z_dim": int(z_dim), "g_width": int(g_width), "d_width": int(d_width),
                                   "embed_dim": int(embed_dim), "lr_g": float(lr_g), "lr_d": float(lr_d),
                                   "betas": [float(b) for b in betas], "ema_decay": float(ema_decay),
                                   "diffaugment": str(diffaugment),
                                   "standing_stats_batches": int(standing_stats_batches),
                                   "diversity_weight": float(diversity_weight),
                                   "autocast": bf16_setting(autocast, "model.autocast"),
                                   "mbstd_group": int(mbstd_group), "hierarchical_z": bool(hierarchical_z),
                                   "width_cap": int(width_cap), "seed": int(seed)})
        self.automatic_optimization = False
        n = len(self.class_names)
        self.generator = Generator(z_dim, n, c, h, width=g_width, embed_dim=embed_dim, width_cap=width_cap,
                                   hierarchical_z=hierarchical_z)
        self.discriminator = ProjectionDiscriminator(n, c, h, width=d_width, mbstd_group=mbstd_group,
                                                     width_cap=width_cap)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.sampling_kwargs: dict[str, Any] = {}

    # ----------------------------------------------------------------------------------- training
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp.lr_g, betas=tuple(hp.betas))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr_d, betas=tuple(hp.betas))
        return [opt_g, opt_d]

    def _autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              enabled=use_bf16(self.hparams.autocast, self.device.type))

    def _d(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | RowDraws | None = None
           ) -> torch.Tensor:
        """``D(T(x), y)`` ``(N,)`` float32; ``T``'s draws come from ``generator`` (None: torch's global RNG)."""
        with self._autocast():
            return self.discriminator(diff_augment(x, self.hparams.diffaugment, generator=generator), y).float()

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        """``batch = (images (N, C, H, W) in [0, 1], labels (N,))``; one D step, one G step, one EMA update."""
        real, y = batch
        real = real * 2 - 1
        opt_g, opt_d = self.optimizers()
        aug = self.training_generator("augment")
        y_fake, fake_slice = self.fake_plan(y)
        z, fake = self._fakes(y_fake, fake_slice, self.training_generator("latent"))
        # DDP: DiffAugment draws for the global real and fake batches, this rank's rows (module docstring).
        real_slice = batch_slice(real.size(0))
        aug_real, aug_fake = ((aug, aug) if real_slice.rows is None
                              else (RowDraws(aug, real_slice), RowDraws(aug, fake_slice)))
        # One generator pass serves both steps: detached for D, then through the updated D for G.
        loss_d, d_real, d_fake = self.discriminator_loss(real, y, fake.detach(), y_fake, generator=aug_real,
                                                         fake_generator=aug_fake)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()

        loss_g, loss_adv, ratio = self.generator_loss(fake, y_fake, z, generator=aug_fake,
                                                      pairs_total=fake_slice.total // 2)
        logs = {} if ratio is None else {"ms_ratio": ratio.detach()}
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        self.update_ema()

        self.log_dict({"loss_d": loss_d.detach(), "loss_g": loss_adv.detach(),
                       "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean(), **logs},
                      prog_bar=True, on_step=True, on_epoch=False, batch_size=real.size(0),
                      sync_dist=real_slice.rows is not None)  # DDP: means over the global batch

    def check_distributed(self, batch_size: int, world_size: int) -> None:
        """Before training on ``world_size`` processes with ``batch_size`` images each: the mode-seeking pairs
        need an even per-process batch (:meth:`fake_plan`); raises :class:`ConfigError` otherwise."""
        if world_size > 1 and float(self.hparams.diversity_weight) > 0 and int(batch_size) % 2:
            raise ConfigError("model.batch_size", f"{batch_size} per process on {world_size} processes: the GAN's "
                              "mode-seeking pairs need an even per-process batch (or model.diversity_weight=0)")

    def fake_plan(self, y: torch.Tensor) -> tuple[torch.Tensor, BatchSlice]:
        """This rank's fake labels and their :class:`~synthgen.models.distributed.BatchSlice` in the global
        fake batch, for real labels ``y (b,)``.

        The global fake batch is built from the global real labels ``Y (B,)`` (gathered over DDP ranks): with
        the mode-seeking loss on, pairs ``(i, i + B/2)`` share a label (``Y_fake = [Y[:B/2], Y[:B/2]]``),
        otherwise ``Y_fake = Y``. One process keeps all rows. Under DDP rank ``r`` keeps the pairs
        ``i = r, r + W, ...`` (both members, so its pairs stay local: rows ``[i..., i + B/2...]``), or without
        pairs rows ``r, r + W, ...``.

        Raises:
            ConfigError: pairs under DDP whose ``B/2`` is not a multiple of the process count ``W`` (the ranks
                would hold unequal shares; use a per-device batch size that is even).
        """
        y_all = gather_global(y)
        half = y_all.size(0) // 2
        paired = float(self.hparams.diversity_weight) > 0 and half > 0
        y_fake = torch.cat([y_all[:half], y_all[:half]]) if paired else y_all
        rank, w = world()
        if w == 1:
            return y_fake, BatchSlice(y_fake.size(0), None)
        if paired:
            if half % w:
                raise ConfigError("model.batch_size", f"the mode-seeking pairs need half the global batch "
                                  f"({half}) to be a multiple of the {w} processes: use an even per-device batch")
            i = torch.arange(rank, half, w, dtype=torch.long)
            rows = torch.cat([i, i + half])
        else:
            rows = torch.arange(y.size(0), dtype=torch.long) * w + rank
        sl = BatchSlice(y_fake.size(0), rows)
        return sl.take(y_fake), sl

    def _fakes(self, y_fake: torch.Tensor, sl: BatchSlice, generator: torch.Generator | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, G(z, y_fake))`` for this rank's fake labels; ``z`` drawn for the global fake batch from
        ``generator`` (on CPU) and sliced, or from torch's global RNG on the module's device (None)."""
        if generator is None:
            z = torch.randn(y_fake.size(0), self.hparams.z_dim, device=self.device)
        else:
            z = draw_rows((y_fake.size(0), int(self.hparams.z_dim)), sl,
                          lambda s: torch.randn(s, generator=generator)).to(self.device)
        with self._autocast():
            fake = self.generator(z, y_fake).float()
        return z, fake

    def fake_batch(self, y: torch.Tensor, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z (N, Z), y_fake (N,), fake (N, C, H, W) in (-1, 1) float32)`` for real labels ``y (N,)``.

        With the mode-seeking loss on, the fakes come in pairs ``(i, i + N/2)`` sharing a label
        (``y_fake = [y[:N/2], y[:N/2]]``); otherwise ``y_fake = y`` (under DDP: this rank's part of the global
        fake batch, :meth:`fake_plan`). ``z ~ N(0, I)`` is drawn on CPU from ``generator`` (None: torch's
        global RNG, on the module's device)."""
        y_fake, sl = self.fake_plan(y)
        z, fake = self._fakes(y_fake, sl, generator)
        return z, y_fake, fake

    def discriminator_loss(self, real: torch.Tensor, y: torch.Tensor, fake: torch.Tensor, y_fake: torch.Tensor,
                           generator: torch.Generator | RowDraws | None = None,
                           fake_generator: torch.Generator | RowDraws | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hinge loss ``E[relu(1 - D(T(x)))] + E[relu(1 + D(T(G(z))))]`` and the two score vectors
        (``T``'s draws from ``generator``; for the fakes from ``fake_generator`` when given)."""
        d_real = self._d(real, y, generator)
        d_fake = self._d(fake, y_fake, generator if fake_generator is None else fake_generator)
        return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean(), d_real, d_fake

    def generator_loss(self, fake: torch.Tensor, y_fake: torch.Tensor, z: torch.Tensor,
                       generator: torch.Generator | RowDraws | None = None, pairs_total: int | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(L_G, adversarial part, mode-seeking ratio or None)`` for a :meth:`fake_batch` (``T``'s draws
        from ``generator``). Under DDP (``pairs_total`` = pairs in the global fake batch) the ratio's two means
        are over all ranks' pairs (differentiable all-reduce), as one process computes them."""
        loss_adv = -self._d(fake, y_fake, generator).mean()
        half = fake.size(0) // 2
        div_w = float(self.hparams.diversity_weight)
        if div_w <= 0 or half == 0:
            return loss_adv, loss_adv, None
        if world()[1] == 1:
            ratio = mode_seeking_ratio(fake[:half], fake[half:], z[:half], z[half:])
        else:
            pairs = int(pairs_total or half * world()[1])
            dx = all_reduce_sum((fake[:half] - fake[half:]).abs().sum()) / (pairs * fake[0].numel())
            dz = all_reduce_sum((z[:half] - z[half:]).abs().sum()) / (pairs * z[0].numel())
            ratio = dx / dz.clamp_min(1e-8)
        return loss_adv + div_w / (ratio + 1e-5), loss_adv, ratio

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        """Discriminator score on held-out real images (no augmentation): a falling ``val_d_real`` while the
        training ``d_real`` rises is the usual sign of discriminator overfitting on small data."""
        real, y = batch
        self.log("val_d_real", self.discriminator(real * 2 - 1, y).mean(), on_epoch=True, batch_size=real.size(0))

    @torch.no_grad()
    def update_ema(self) -> None:
        """``ema = d * ema + (1 - d) * online`` for generator parameters; buffers (BN statistics) copied."""
        n = int(self.ema_updates)
        decay = min(self.hparams.ema_decay, (1 + n) / (10 + n))
        for pe, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            pe.lerp_(p.detach().to(pe.dtype), 1 - decay)
        for be, b in zip(self.generator_ema.buffers(), self.generator.buffers()):
            be.copy_(b)
        self.ema_updates += 1

    @torch.no_grad()
    def prepare_for_sampling(self, seed: int = 0) -> None:
        """Recompute the EMA generator's BatchNorm running statistics for its own weights ("standing
        statistics"): a cumulative average over ``standing_stats_batches`` batches of seeded latents with
        uniformly drawn labels. Deterministic for a given ``seed`` and weights."""
        batches = int(self.hparams.standing_stats_batches)
        if batches <= 0:
            return
        g = self.generator_ema
        bns = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
            m.sync = False  # DistBatchNorm2d: every DDP rank feeds the same seeded batch here
        g.train()
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        for _ in range(batches):
            z = torch.randn(128, self.hparams.z_dim, generator=gen)
            y = torch.randint(0, len(self.class_names), (128,), generator=gen)
            g(z.to(self.device), y.to(self.device))
        for m in bns:
            m.momentum = 0.1
        g.eval()

    # --------------------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(self, labels: torch.Tensor, seeds: torch.Tensor, truncation: float | None = None,
                 **ignored: Any) -> torch.Tensor:
        """Images for ``labels`` ``(N,)`` and ``seeds`` ``(N,)`` from the EMA generator.

        ``z_i = seeded_noise(seeds[i])``; with ``truncation = t`` entries are clipped to ``[-t, t]``
        (the simple truncation trick: less diversity, cleaner images). Other sampling keys (a diffusion
        model's ``sampler``/``steps``/``guidance``) are ignored.

        Returns:
            ``(N, C, H, W)`` float32 in ``[0, 1]`` on CPU.
        """
        g = self.generator_ema.eval()
        z = seeded_noise(seeds, (self.hparams.z_dim,), device=self.device)
        if truncation is not None:
            z = z.clamp(-float(truncation), float(truncation))
        x = g(z, labels.to(self.device).long())
        return ((x.float() + 1) / 2).clamp(0, 1).cpu()
