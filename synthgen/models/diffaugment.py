"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for GANs trained on small data.

The same random transform family is applied to real and fake images before the discriminator, in both the
discriminator and the generator step, so the discriminator cannot memorise the few real images while the
generator still receives gradients through the (differentiable) transforms. Randomness comes from the
``generator`` argument (drawn on CPU, then moved to the images' device, so a checkpointed generator makes
training resumable: :meth:`synthgen.models.base.GeneratorModule.training_generator`), or from torch's global
RNG on the images' device when it is None.

No policy flips or rotates (checked for issue 13): color, translation and cutout keep left and right where
they are, so nothing here depends on the data source's ``data.symmetries`` (a flip turns a left organ into a
right one; on lateralized anatomy the generator would learn mirrored images of a class). A flip or rotation
policy added here must be gated on ``data.symmetries`` (``synthgen/data/symmetries.py``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .distributed import RowDraws, draw_rows

Gen = torch.Generator | RowDraws | None


def _rand(x: torch.Tensor, shape: Sequence[int], generator: Gen) -> torch.Tensor:
    """``U[0, 1)`` of ``shape`` in ``x``'s dtype on ``x``'s device (drawn on CPU from ``generator`` if given;
    a :class:`~synthgen.models.distributed.RowDraws`: drawn for the global batch, this rank's rows kept)."""
    if generator is None:
        return torch.rand(tuple(shape), device=x.device, dtype=x.dtype)
    if isinstance(generator, RowDraws):
        g = generator.generator
        return draw_rows(tuple(shape), generator.slice, lambda s: torch.rand(s, generator=g)).to(
            device=x.device, dtype=x.dtype)
    return torch.rand(tuple(shape), generator=generator).to(device=x.device, dtype=x.dtype)


def _randint(x: torch.Tensor, low: int, high: int, shape: Sequence[int], generator: Gen) -> torch.Tensor:
    """Integers in ``[low, high)`` of ``shape`` on ``x``'s device (drawn on CPU from ``generator`` if given;
    a :class:`~synthgen.models.distributed.RowDraws` as in :func:`_rand`)."""
    if generator is None:
        return torch.randint(low, high, tuple(shape), device=x.device)
    if isinstance(generator, RowDraws):
        g = generator.generator
        return draw_rows(tuple(shape), generator.slice, lambda s: torch.randint(low, high, s, generator=g)).to(
            x.device)
    return torch.randint(low, high, tuple(shape), generator=generator).to(x.device)


def brightness(x: torch.Tensor, generator: Gen = None) -> torch.Tensor:
    """Add a per-image offset in ``[-0.5, 0.5)`` (images in ``[-1, 1]``)."""
    return x + (_rand(x, (x.size(0), 1, 1, 1), generator) - 0.5)


def saturation(x: torch.Tensor, generator: Gen = None) -> torch.Tensor:
    """Scale the deviation from the channel mean by ``[0, 2)`` (identity for one channel)."""
    if x.size(1) == 1:
        return x
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x, (x.size(0), 1, 1, 1), generator) * 2) + mean


def contrast(x: torch.Tensor, generator: Gen = None) -> torch.Tensor:
    """Scale the deviation from the image mean by ``[0.5, 1.5)``."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, (x.size(0), 1, 1, 1), generator) + 0.5) + mean


def translation(x: torch.Tensor, generator: Gen = None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its side in each axis, zero padding (pixel-exact gather)."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = _randint(x, -sh, sh + 1, (n, 1, 1), generator)
    ty = _randint(x, -sw, sw + 1, (n, 1, 1), generator)
    gi, gj = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gi = torch.clamp(gi[None] + tx + 1, 0, h + 1)
    gj = torch.clamp(gj[None] + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    flat = padded.permute(0, 2, 3, 1)  # (N, H+2, W+2, C)
    out = flat[torch.arange(n, device=x.device)[:, None, None], gi, gj]
    return out.permute(0, 3, 1, 2).contiguous()


def cutout(x: torch.Tensor, generator: Gen = None, ratio: float = 0.5) -> torch.Tensor:
    """Zero one random square of side ``ratio * side`` per image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = _randint(x, 0, h + (1 - ch % 2), (n, 1, 1), generator)
    ox = _randint(x, 0, w + (1 - cw % 2), (n, 1, 1), generator)
    gy = torch.arange(h, device=x.device)[None, :, None]
    gx = torch.arange(w, device=x.device)[None, None, :]
    top, left = oy - ch // 2, ox - cw // 2  # the square may hang over the border (then it is clipped)
    inside = (gy >= top) & (gy < top + ch) & (gx >= left) & (gx < left + cw)
    return x * (~inside).to(x.dtype)[:, None]


POLICIES: dict[str, Sequence[Callable[[torch.Tensor, Gen], torch.Tensor]]] = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def parse_policy(policy: str) -> list[str]:
    """``"color,translation,cutout"`` -> names; ``""`` -> no augmentation. Unknown names raise ValueError."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policy {unknown}; known: {sorted(POLICIES)}")
    return names


def diff_augment(x: torch.Tensor, policy: str, generator: Gen = None) -> torch.Tensor:
    """Apply the comma-separated ``policy`` to ``x`` ``(N, C, H, W)`` in ``[-1, 1]``; same shape back.
    Every random draw comes from ``generator`` (on CPU; None: torch's global RNG)."""
    for name in parse_policy(policy):
        for fn in POLICIES[name]:
            x = fn(x, generator)
    return x
