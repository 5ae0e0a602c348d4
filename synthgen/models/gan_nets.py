"""Networks of the class-conditional GAN: a ResNet generator with class-conditional BatchNorm and a
projection discriminator with spectral normalization (Miyato & Koyama 2018, SNGAN/BigGAN style), sized for
square images of 16-256 px.

Geometry: both nets work on a square side ``S`` split into ``k`` factor-2 steps over a base side
``b = S / 2**k >= 4`` (28 -> 7, 14, 28; 32 -> 4, 8, 16, 32; 64 -> 4 ... 64; 128 -> 4 ... 128: more up/down
blocks as the side grows). The generator starts from a ``(g_width * min(2**k, cap), b, b)`` tensor and doubles
the side (halving channels down to ``g_width``) ``k`` times; the discriminator halves the side ``k`` times with
``d_width * min(2**i, cap)`` channels after down-block ``i``. ``cap`` (``width_cap``, 8) bounds the widest
block, which would otherwise grow as ``2**k`` (1024 channels at 128 px with width 32); 28-32 px never reach it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .distributed import DistBatchNorm2d


def block_widths(width: int, steps: int, cap: int) -> list[int]:
    """Channels ``width * min(2**i, cap)`` for ``i = 0 .. steps`` (finest first)."""
    if width < 1 or cap < 1:
        raise ValueError(f"width and width_cap must be >= 1, got {width}, {cap}")
    return [int(width) * min(2 ** i, int(cap)) for i in range(steps + 1)]


def upsampling_plan(side: int) -> tuple[int, int]:
    """``(base_side, n_steps)`` with ``base_side * 2**n_steps == side`` and ``base_side >= 4``.

    Raises:
        ValueError: if ``side`` cannot be reached that way (e.g. odd sides below 8).
    """
    base, steps = int(side), 0
    while base % 2 == 0 and base // 2 >= 4:
        base //= 2
        steps += 1
    if steps == 0:
        raise ValueError(f"image side {side} is too small or odd for the GAN (need side = b * 2**k, b >= 4, k >= 1)")
    return base, steps


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine parameters, followed by a per-class scale and shift.

    ``forward(x (N, C, H, W), y (N,) int64) -> (N, C, H, W)``; gain initialised to 1, bias to 0.
    """

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.bn = DistBatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(n_classes, channels)
        self.bias = nn.Embedding(n_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)
        return h * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class LatentConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine parameters, then a scale ``1 + W_g c`` and shift ``W_b c`` computed from a
    conditioning vector ``c`` (BigGAN: shared class embedding concatenated with a chunk of ``z``).

    ``forward(x (N, C, H, W), c (N, D) float) -> (N, C, H, W)``.
    """

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.bn = DistBatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(cond_dim, channels, bias=False)
        self.bias = nn.Linear(cond_dim, channels, bias=False)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)
        return h * (1 + self.gain(c))[:, :, None, None] + self.bias(c)[:, :, None, None]


class GBlock(nn.Module):
    """Residual up-block: CBN-ReLU-conv (at the input side) -> up x2 -> CBN-ReLU-conv, plus an upsampled
    1x1 shortcut. Doubles H and W. The first conv runs before upsampling, which costs a quarter of the
    usual upsample-then-conv order (CPU budgets).

    ``cond_dim = 0``: the norms are conditioned on the class index ``y (N,)``; ``cond_dim > 0``: on a
    vector ``(N, cond_dim)`` (:class:`LatentConditionalBatchNorm2d`)."""

    def __init__(self, c_in: int, c_out: int, n_classes: int, cond_dim: int = 0):
        super().__init__()
        def norm(c: int) -> nn.Module:
            return LatentConditionalBatchNorm2d(c, cond_dim) if cond_dim else ConditionalBatchNorm2d(c, n_classes)

        self.bn1 = norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn2 = norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(self.conv1(F.relu(self.bn1(x, y))), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(h, y)))
        return h + F.interpolate(self.skip(x), scale_factor=2, mode="nearest")


class Generator(nn.Module):
    """``(z (N, z_dim), y (N,) int64) -> (N, C, S, S)`` in ``(-1, 1)`` (tanh).

    Channels: ``width * min(2**(k - i), width_cap)`` at step ``i`` (e.g. 28 px, width 32: 128 @ 7, 64 @ 14,
    32 @ 28; 128 px, width 16, cap 8: 128 @ 4, 8, 16, then 64, 32, 16 @ 128).
    The class enters every block through conditional BatchNorm and the input through a shared embedding
    concatenated to ``z``. With ``hierarchical_z`` (BigGAN) ``z`` is split into ``k + 1`` chunks: the first
    feeds the input layer, chunk ``i + 1`` joins the class embedding in block ``i``'s norms, so the latent
    modulates every resolution directly (a generator that ignores ``z`` collapses within a class).
    """

    def __init__(self, z_dim: int, n_classes: int, channels: int, side: int, width: int = 32,
                 embed_dim: int = 32, hierarchical_z: bool = False, width_cap: int = 8):
        super().__init__()
        self.base, steps = upsampling_plan(side)
        chans = block_widths(width, steps, width_cap)[::-1]
        self.z_dim, self.c0 = z_dim, chans[0]
        self.embed = nn.Embedding(n_classes, embed_dim)
        self.fc = nn.Linear(z_dim + embed_dim, chans[0] * self.base * self.base)
        self.z_chunks: list[int] = []
        if hierarchical_z:
            if z_dim < steps + 1:
                raise ValueError(f"hierarchical_z needs z_dim >= {steps + 1} (one chunk per block + input)")
            chunk = z_dim // (steps + 1)
            self.z_chunks = [z_dim - steps * chunk] + [chunk] * steps
            self.fc = nn.Linear(self.z_chunks[0] + embed_dim, chans[0] * self.base * self.base)
        cond = embed_dim + self.z_chunks[1] if hierarchical_z else 0
        self.blocks = nn.ModuleList(GBlock(chans[i], chans[i + 1], n_classes, cond) for i in range(steps))
        self.bn_out = DistBatchNorm2d(chans[-1])
        self.conv_out = nn.Conv2d(chans[-1], channels, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e = self.embed(y)
        if self.z_chunks:
            zs = torch.split(z, self.z_chunks, dim=1)
            h = self.fc(torch.cat([zs[0], e], dim=1)).view(-1, self.c0, self.base, self.base)
            for block, zc in zip(self.blocks, zs[1:]):
                h = block(h, torch.cat([e, zc], dim=1))
        else:
            h = self.fc(torch.cat([z, e], dim=1)).view(-1, self.c0, self.base, self.base)
            for block in self.blocks:
                h = block(h, y)
        return torch.tanh(self.conv_out(F.relu(self.bn_out(h))))


class DBlock(nn.Module):
    """Spectrally normalised residual down-block: (ReLU)-conv -> avgpool -> ReLU-conv, plus a pooled 1x1
    shortcut. Halves H and W; the second conv runs at the halved size (a quarter of the cost).

    ``preactivation=False`` for the first block, which sees raw pixels.
    """

    def __init__(self, c_in: int, c_out: int, preactivation: bool = True):
        super().__init__()
        self.pre = preactivation
        self.conv1 = spectral_norm(nn.Conv2d(c_in, c_out, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = spectral_norm(nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.pre else x
        h = self.conv2(F.relu(F.avg_pool2d(self.conv1(h), 2)))
        return h + self.skip(F.avg_pool2d(x, 2))


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append one channel holding the minibatch standard deviation (Karras et al. 2018, ProGAN/StyleGAN).

    The batch is split into groups of ``g = min(group_size, N)`` images (``N`` must be divisible by ``g``,
    else the whole batch is one group); within a group the per-pixel, per-channel std over the ``g``
    images is averaged to one scalar, broadcast to ``(g, 1, H, W)``. ``(N, C, H, W) -> (N, C + 1, H, W)``.

    Why: a discriminator that scores images one at a time cannot see that a generator maps many latents
    to nearly one image; this feature lets it (cheap within-class mode-collapse counter).
    """
    n, c, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        g = n
    y = x.float().view(g, n // g, c, h, w)
    std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (N / g,)
    feat = std.to(x.dtype).view(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, feat], dim=1)


class ProjectionDiscriminator(nn.Module):
    """``(x (N, C, S, S) in [-1, 1], y (N,) int64) -> (N,)`` unbounded score (hinge loss).

    ``score = w . phi(x) + embed(y) . phi(x)`` where ``phi`` is the sum-pooled feature after ``k``
    down-blocks (the projection term carries the class condition). With ``mbstd_group > 0`` a
    :func:`minibatch_stddev` channel enters the last conv (scores then depend on the other images of a
    group: score real and fake batches in separate calls).
    """

    def __init__(self, n_classes: int, channels: int, side: int, width: int = 32, mbstd_group: int = 0,
                 width_cap: int = 8):
        super().__init__()
        _, steps = upsampling_plan(side)
        chans = block_widths(width, steps - 1, width_cap)
        blocks = [DBlock(channels, chans[0], preactivation=False)]
        blocks += [DBlock(chans[i - 1], chans[i]) for i in range(1, steps)]
        self.blocks = nn.Sequential(*blocks)
        self.mbstd_group = int(mbstd_group)
        extra = 1 if self.mbstd_group > 0 else 0
        self.conv_last = spectral_norm(nn.Conv2d(chans[-1] + extra, chans[-1], 3, padding=1))
        self.linear = spectral_norm(nn.Linear(chans[-1], 1))
        self.embed = spectral_norm(nn.Embedding(n_classes, chans[-1]))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x))
        if self.mbstd_group > 0:
            h = minibatch_stddev(h, self.mbstd_group)
        h = F.relu(self.conv_last(h))
        phi = h.sum(dim=(2, 3))
        return self.linear(phi).squeeze(1) + (self.embed(y) * phi).sum(dim=1)
