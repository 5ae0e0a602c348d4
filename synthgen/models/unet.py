"""A small attention-free, class-conditional UNet for 28-64 px medical images on CPU.

Design (chosen by ``benchmarks/cases/unet.py``, which measures it against MONAI's
``DiffusionModelUNet`` and diffusers' ``UNet2DModel`` of the same parameter count):

- no attention: at 7x7-16x16 feature maps attention adds cost on CPU without a measurable gain for
  28 px class-conditional images;
- one skip connection per resolution level (concatenated once, before the decoder blocks of that level)
  instead of one skip per residual block as in the DDPM/ADM UNets: fewer, wider convolutions, which is
  what oneDNN (AMX/AVX-512 bf16) runs fastest;
- upsampling convolves at the coarse resolution and then repeats pixels (nearest), a quarter of the
  cost of the usual upsample-then-convolve;
- time and class embeddings are summed into one vector that modulates every residual block with a
  scale and shift after its second GroupNorm (FiLM, as in ADM's ``use_scale_shift_norm``); class index
  ``num_classes`` is the *null* class used by classifier-free guidance.

Shapes: ``x`` ``(N, C, H, W)`` (any H, W; odd sizes such as 7 are handled by resizing the upsampled map to
the skip's size), or ``(N, C, D, H, W)`` with ``spatial_dims=3`` (volumes: Conv3d, the same GroupNorm, nearest
upsampling; chosen over MONAI's 3D ``DiffusionModelUNet`` by ``benchmarks/unet3d.py``), ``t`` ``(N,)`` integer
or float timesteps in ``[0, T)``, ``y`` ``(N,)`` int64 labels in ``[0, num_classes]``. Output: the shape of
``x``, the model's prediction (epsilon or v, see :mod:`synthgen.sampling.schedule`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(N, dim)`` of timesteps ``t`` ``(N,)``:
    ``[cos(t * f_k), sin(t * f_k)]`` with ``f_k = max_period^(-k / (dim/2))``, ``k = 0 .. dim/2 - 1``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def conv_nd(spatial_dims: int) -> type[nn.Module]:
    """``nn.Conv2d`` for images (``spatial_dims=2``), ``nn.Conv3d`` for volumes (``3``)."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def _groups(channels: int, max_groups: int = 32) -> int:
    """Largest divisor of ``channels`` that is <= ``max_groups`` (GroupNorm needs an exact division)."""
    g = min(max_groups, channels)
    while channels % g:
        g -= 1
    return g


class ResBlock(nn.Module):
    """``GN -> SiLU -> conv3x3 -> GN * (1 + scale) + shift -> SiLU -> dropout -> conv3x3`` plus a (1x1) skip.

    ``(scale, shift)`` come from the embedding ``(N, emb_dim)``; the last conv starts at zero so every
    block is the identity at initialization (stable training from step 0).
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0, spatial_dims: int = 2):
        super().__init__()
        conv = conv_nd(spatial_dims)
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = conv(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = conv(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb).view(*emb.shape[:1], -1, *(1,) * (x.dim() - 2)).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class ClassConditionalUNet(nn.Module):
    """Attention-free class-conditional UNet.

    Args:
        in_channels: image channels ``C`` (1 grey, 3 RGB); the output has the same count.
        num_classes: number of real classes ``K``; the embedding has ``K + 1`` rows (row ``K`` = null class).
        channels: widths per resolution level, e.g. ``(64, 128, 128)``: level ``i`` runs at
            ``H / 2**i``. Three levels fit 28 px (28 -> 14 -> 7); use four for 64 px.
        blocks_per_level: residual blocks per level in the encoder and in the decoder.
        emb_dim: width of the time + class embedding (default ``4 * channels[0]``).
        dropout: dropout inside residual blocks.
        spatial_dims: 2 for images ``(N, C, H, W)``, 3 for volumes ``(N, C, D, H, W)`` (every level halves
            D, H and W).
    """

    def __init__(self, in_channels: int, num_classes: int, channels: Sequence[int] = (64, 128, 128),
                 blocks_per_level: int = 1, emb_dim: int | None = None, dropout: float = 0.0,
                 spatial_dims: int = 2):
        super().__init__()
        conv, nd = conv_nd(spatial_dims), int(spatial_dims)
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1 or blocks_per_level < 1:
            raise ValueError(f"bad UNet widths {channels} / blocks_per_level {blocks_per_level}")
        self.num_classes = int(num_classes)
        self.null_class = self.num_classes
        self.base = channels[0]
        emb_dim = int(emb_dim or 4 * channels[0])
        self.time_mlp = nn.Sequential(nn.Linear(channels[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(self.num_classes + 1, emb_dim)
        self.stem = conv(in_channels, channels[0], 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = channels[0]
        for i, ch in enumerate(channels):
            blocks = nn.ModuleList()
            for _ in range(blocks_per_level):
                blocks.append(ResBlock(prev, ch, emb_dim, dropout, nd))
                prev = ch
            self.down.append(blocks)
            if i < len(channels) - 1:
                self.downsample.append(conv(ch, ch, 3, stride=2, padding=1))
        self.mid = nn.ModuleList([ResBlock(prev, prev, emb_dim, dropout, nd),
                                  ResBlock(prev, prev, emb_dim, dropout, nd)])

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(channels))):
            ch = channels[i]
            blocks = nn.ModuleList()
            for j in range(blocks_per_level):
                blocks.append(ResBlock(prev + ch if j == 0 else ch, ch, emb_dim, dropout, nd))
                prev = ch
            self.up.append(blocks)
            if i > 0:
                self.upsample.append(conv(ch, channels[i - 1], 3, padding=1))
                prev = channels[i - 1]
        self.out_norm = nn.GroupNorm(_groups(prev), prev)
        self.out = conv(prev, in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Prediction shaped like ``x`` for noisy images ``x`` ``(N, C, H, W)`` (3D: ``(N, C, D, H, W)``),
        timesteps ``t`` ``(N,)`` and labels ``y`` ``(N,)`` in ``[0, num_classes]`` (``num_classes`` =
        unconditional)."""
        emb = self.time_mlp(timestep_embedding(t, self.base).to(x.dtype)) + self.class_emb(y)
        h = self.stem(x)
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        for block in self.mid:
            h = block(h, emb)
        for i, blocks in enumerate(self.up):
            skip = skips.pop()
            if h.shape[2:] != skip.shape[2:]:
                h = F.interpolate(h, size=skip.shape[2:], mode="nearest")
            h = torch.cat([h, skip], dim=1)
            for block in blocks:
                h = block(h, emb)
            if i < len(self.upsample):
                # conv at the coarse resolution, then nearest upsampling: 4x fewer MACs than conv-after-upsample
                h = F.interpolate(self.upsample[i](h), scale_factor=2.0, mode="nearest")
        return self.out(F.silu(self.out_norm(h)))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
