"""Copy-detection embedding: a small CNN trained in the project to map an image and its edited copies together.

Training (SimCLR-style, NT-Xent loss, Chen et al. 2020): every batch of training images is turned into two
independently edited views with the edits a copier would use -- shift, small rotation and scale (composed,
with edge, zero or reflection padding drawn per view: ``pad_modes``), gamma, additive noise, blur,
re-quantization -- and the encoder learns to match each view to its
twin against the other ``2B - 2`` images of the batch. Output vectors are L2-normalised; similarity is cosine.

Mirror images and right-angle rotations (decided in issue 13). The data source's ``data.symmetries`` say which
transforms keep a *class label* (none, for lateralized anatomy); copy detection asks another question, whether
an image reproduces a training patient's pixels, and a mirrored or rotated training image does. So this encoder
does not read ``data.symmetries``: copy-ness does not depend on the label's symmetries. Invariance to flips and
right-angle rotations would be desirable for the same reason, but training it in (a random dihedral transform on
every view) costs too much, measured on PneumoniaMNIST (``python benchmarks/copy_invariance.py``: 3,882 training
X-rays, threshold at the 99th percentile of val, 300 planted copies per kind): the embedding rule's recall fell
from 0.33 to 0.05 on mild edits and from 0.62 to 0.36 on moderate ones, and reached only 0.03 on mirrored copies
(0.007 before); flips-only training: 0.18 / 0.57 / 0.37. What works is searching the *query's* orbit at audit
time, the max cosine over its 8 flipped/rotated views with this unchanged encoder: mirrored and rotated copies
1.00, mild 0.29, moderate 0.60, false flags on unseen patients 0.003 (0.011 with one view). So the training views
here get no flips, and catching mirrored copies is left to that search in the audit (not implemented yet).

No downloaded weights: the encoder is trained on the training split itself, in a fixed number of steps (a
bounded CPU budget: ~1-2 min on 2 cores for the defaults), seeded, and cached under ``cache_dir`` by the
SHA-256 of the training pixels and the config, so every stage and every audit of the same data reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddingConfig:
    """Encoder and training hyper-parameters (``privacy.embedding`` in conf)."""

    dim: int = 64
    width: int = 24
    steps: int = 300
    batch_size: int = 128
    lr: float = 3e-3
    temperature: float = 0.1
    max_rotation_deg: float = 8.0
    scale_range: tuple[float, float] = (0.88, 1.15)
    max_shift_px: float = 3.0
    gamma_range: tuple[float, float] = (0.8, 1.25)
    max_noise: float = 0.03
    max_blur_sigma: float = 1.0
    # padding of the geometric edit, drawn per image (issue 15: copies shifted or rotated with zero padding
    # lost their source from the candidate lists when the encoder had only seen edge padding)
    pad_modes: tuple[str, ...] = ("border", "zeros", "reflection")
    seed: int = 0


class CopyEncoder(nn.Module):
    """``(N, C, H, W)`` float ``[0, 1]`` -> ``(N, dim)`` unit vectors: three stride-2 conv blocks, 2x2 pooled
    features (keeps coarse layout), MLP head. ~1.3 M multiply-adds per 28x28 image (cheap on CPU).

    ``spatial_dims=3``: the same with 3D convolutions and 2x2x2 pooled features, for volumes ``(N, C, D, H, W)``
    (at the audit's volume working size, 16^3 by default: ~3 M multiply-adds per volume)."""

    def __init__(self, channels: int, dim: int = 64, width: int = 32, spatial_dims: int = 2):
        super().__init__()
        w = width
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.spatial_dims = spatial_dims
        self.features = nn.Sequential(
            conv(channels, w, 3, stride=2, padding=1), nn.GroupNorm(4, w), nn.GELU(),
            conv(w, 2 * w, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * w), nn.GELU(),
            conv(2 * w, 4 * w, 3, stride=2, padding=1), nn.GroupNorm(8, 4 * w), nn.GELU(),
        )
        self.head = nn.Sequential(nn.Linear(4 * w * 2 ** spatial_dims, 4 * w), nn.GELU(), nn.Linear(4 * w, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.25
        pool = F.adaptive_avg_pool2d if self.spatial_dims == 2 else F.adaptive_avg_pool3d
        h = pool(self.features(x), 2).flatten(1)
        return F.normalize(self.head(h), dim=1)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample separable Gaussian blur, ``sigma`` ``(N,)`` in pixels (0 = none), 5-tap kernels."""
    taps = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
    k = torch.exp(-(taps[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)                                         # (N, 5)
    n, c, h, w = x.shape
    xp = F.pad(x, (2, 2, 2, 2), mode="replicate")
    # horizontal then vertical, grouped per sample
    kh = k.repeat_interleave(c, 0)[:, None, None, :]
    y = F.conv2d(xp.reshape(1, n * c, h + 4, w + 4), kh, groups=n * c)
    y = F.conv2d(y, kh.transpose(2, 3), groups=n * c)
    return y.reshape(n, c, h, w)


def _blur3(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """:func:`_blur` for volumes ``(N, C, D, H, W)``: the 5-tap kernel along each spatial axis in turn."""
    for axis in (2, 3, 4):
        x = _blur1(x, sigma, axis)
    return x


def _blur1(x: torch.Tensor, sigma: torch.Tensor, axis: int) -> torch.Tensor:
    """Per-sample 5-tap Gaussian along ``axis`` of ``(N, C, ...)`` (replicate padding)."""
    taps = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
    k = torch.exp(-(taps[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)                                         # (N, 5)
    y = x.movedim(axis, -1)
    shp = y.shape
    yp = F.pad(y.reshape(shp[0], -1, shp[-1]), (2, 2), mode="replicate")   # (N, M, L + 4)
    out = sum(k[:, u, None, None] * yp[..., u:u + shp[-1]] for u in range(5))
    return out.reshape(shp).movedim(-1, axis)


def _sample_padded(x: torch.Tensor, grid: torch.Tensor, modes: tuple[str, ...], g: torch.Generator
                   ) -> torch.Tensor:
    """Bilinear ``grid_sample`` of images or volumes ``x`` with one padding mode per sample drawn from ``modes``
    (one ``randint`` draw of ``N`` values from ``g``); same shape as ``x``."""
    pick = torch.randint(len(modes), (x.shape[0],), generator=g)
    out = torch.empty_like(x)
    for i, mode in enumerate(modes):
        sel = pick == i
        if bool(sel.any()):
            out[sel] = F.grid_sample(x[sel], grid[sel], mode="bilinear", padding_mode=mode, align_corners=False)
    return out


def _augment3d(x: torch.Tensor, cfg: EmbeddingConfig, g: torch.Generator) -> torch.Tensor:
    """:func:`copy_augment` for volumes ``(N, C, D, H, W)``: rotation about the D axis (in the H-W plane),
    isotropic scale, shift along every axis (one affine map, padding drawn from ``pad_modes``), gamma, blur
    (50%), noise, 8-bit re-quantization."""
    n, c, d, h, w = x.shape

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    ang = torch.deg2rad(u(-cfg.max_rotation_deg, cfg.max_rotation_deg))
    scale = u(*cfg.scale_range)
    t = [u(-cfg.max_shift_px, cfg.max_shift_px) * 2 / size for size in (w, h, d)]   # (x, y, z) order
    cos, sin, inv = torch.cos(ang) / scale, torch.sin(ang) / scale, 1 / scale
    z = torch.zeros(n)
    mats = torch.stack([torch.stack([cos, -sin, z, t[0]], 1), torch.stack([sin, cos, z, t[1]], 1),
                        torch.stack([z, z, inv, t[2]], 1)], 1)
    grid = F.affine_grid(mats, [n, c, d, h, w], align_corners=False)
    out = _sample_padded(x, grid, tuple(cfg.pad_modes) or ("border",), g)
    gamma = torch.exp(u(math.log(cfg.gamma_range[0]), math.log(cfg.gamma_range[1])))
    y = out.clamp(0, 1) ** gamma[:, None, None, None, None]
    blur_on = torch.rand(n, generator=g) < 0.5
    y = torch.where(blur_on[:, None, None, None, None], _blur3(y, u(0.3, cfg.max_blur_sigma)), y)
    y = y + torch.randn(y.shape, generator=g) * u(0.0, cfg.max_noise)[:, None, None, None, None]
    return (y.clamp(0, 1) * 255).round() / 255


def copy_augment(x: torch.Tensor, cfg: EmbeddingConfig, g: torch.Generator) -> torch.Tensor:
    """One random copy-like edit per image of ``x`` ``(N, C, H, W)`` in ``[0, 1]``; same shape and range.
    Volumes ``(N, C, D, H, W)``: :func:`_augment3d`."""
    if x.ndim == 5:
        return _augment3d(x, cfg, g)
    n, c, h, w = x.shape

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    ang = torch.deg2rad(u(-cfg.max_rotation_deg, cfg.max_rotation_deg))
    scale = u(*cfg.scale_range)
    tx, ty = (u(-cfg.max_shift_px, cfg.max_shift_px) * 2 / w), (u(-cfg.max_shift_px, cfg.max_shift_px) * 2 / h)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    mats = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(mats, [n, c, h, w], align_corners=False)
    modes = tuple(cfg.pad_modes) or ("border",)
    if len(modes) == 1:                       # (one mode draws nothing: the former encoder, bit for bit)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode=modes[0], align_corners=False)
    else:
        x = _sample_padded(x, grid, modes, g)
    gamma = torch.exp(u(math.log(cfg.gamma_range[0]), math.log(cfg.gamma_range[1])))
    x = x.clamp(0, 1) ** gamma[:, None, None, None]
    blur_on = torch.rand(n, generator=g) < 0.5
    x = torch.where(blur_on[:, None, None, None], _blur(x, u(0.3, cfg.max_blur_sigma)), x)
    x = x + torch.randn(x.shape, generator=g) * u(0.0, cfg.max_noise)[:, None, None, None]
    return (x.clamp(0, 1) * 255).round() / 255


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent loss of two ``(B, D)`` unit-vector views (positives: the same row of the other view)."""
    z = torch.cat([z1, z2])
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    b = len(z1)
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
    return F.cross_entropy(logits, target)


def cache_key(train01: np.ndarray, cfg: EmbeddingConfig) -> str:
    """SHA-256 of the training pixels (quantized to 16 bits), their shape and the config."""
    h = hashlib.sha256()
    h.update(json.dumps(asdict(cfg), sort_keys=True).encode())
    h.update(str(train01.shape).encode())
    h.update(np.rint(np.clip(train01, 0, 1) * 65535).astype(np.uint16).tobytes())
    return h.hexdigest()[:24]


def train_encoder(train01: np.ndarray, cfg: EmbeddingConfig) -> CopyEncoder:
    """Train a :class:`CopyEncoder` on ``train01`` ``(N, C, H, W)`` (or volumes ``(N, C, D, H, W)``) float
    ``[0, 1]`` (deterministic)."""
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    model = CopyEncoder(train01.shape[1], cfg.dim, cfg.width, train01.ndim - 2)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    warm = max(1, cfg.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, cosine decay
        opt, lambda t: min(1.0, (t + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(t, cfg.steps) / max(cfg.steps, 1))))
    data = torch.as_tensor(train01, dtype=torch.float32)
    bs = min(cfg.batch_size, len(data))
    t0 = time.time()
    model.train()
    for step in range(cfg.steps):
        idx = torch.randperm(len(data), generator=g)[:bs]
        x = data[idx]
        loss = nt_xent(model(copy_augment(x, cfg, g)), model(copy_augment(x, cfg, g)), cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            log.info("copy encoder step %d/%d loss %.3f (%.0fs)", step + 1, cfg.steps, loss.item(), time.time() - t0)
    model.eval()
    return model


def load_or_train(train01: np.ndarray, cfg: EmbeddingConfig, cache_dir: str | Path | None) -> CopyEncoder:
    """The encoder for this training set and config: from ``cache_dir`` when present, else trained and saved."""
    if cache_dir is None:
        return train_encoder(train01, cfg)
    path = Path(cache_dir) / f"copy_encoder-{cache_key(train01, cfg)}.pt"
    model = CopyEncoder(train01.shape[1], cfg.dim, cfg.width, train01.ndim - 2)
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        model.eval()
        return model
    model = train_encoder(train01, cfg)
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    return model


@torch.no_grad()
def embed(model: CopyEncoder, images01: np.ndarray, batch: int = 1024,
          device: str | torch.device = "cpu") -> torch.Tensor:
    """``(N, C, H, W)`` (or ``(N, C, D, H, W)``) float ``[0, 1]`` -> ``(N, dim)`` float32 unit vectors (on CPU)."""
    model = model.to(device).eval()
    out = [model(torch.as_tensor(images01[i:i + batch], dtype=torch.float32, device=device)).cpu()
           for i in range(0, len(images01), batch)]
    return torch.cat(out) if out else torch.zeros((0, model.head[-1].out_features))
