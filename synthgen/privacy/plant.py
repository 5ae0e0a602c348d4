"""Planted copies: edited training images at graded strengths, to prove that the gate catches copies.

Strengths (issue 5; every random quantity is drawn first from ``seed`` and returned with the images):

* ``exact``    -- the training image, re-quantized (a lossless re-encode);
* ``mild``     -- all of: integer shift ``|dx|, |dy| <= 2`` px (edge-replicated), gamma in ``[0.9, 1.1]``,
  Gaussian noise with sigma in ``[1%, 2%]`` of the range, Gaussian blur sigma in ``[0, 0.7]`` px, re-quantized;
* ``moderate`` -- one of (uniformly): rotation in ``[-5, 5]`` deg, isotropic scale in ``[0.95, 1.05]``, or a
  ``0.9`` crop at a random position resized back to full size; re-quantized.

And a deliberately memorizing generator (:func:`memorizing_generator`): a small conditional autoencoder
overfit on a few hundred training images whose samples are decoded noisy latents of those images -- blurred,
not pixel-exact copies, the kind of output per-sample copy rules partly miss and cohort statistics must catch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

STRENGTHS = ("exact", "mild", "moderate")


def _requantize(x: torch.Tensor) -> np.ndarray:
    return (np.rint(x.clamp(0, 1).numpy() * 255.0) / 255.0).astype(np.float32)


def _gauss_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma < 0.05:
        return img
    r = int(np.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    c = img.shape[0]
    x = F.pad(img[None], (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x[0]


def _affine(img: torch.Tensor, angle_deg: float, scale: float) -> torch.Tensor:
    a = np.deg2rad(angle_deg)
    m = torch.tensor([[np.cos(a) / scale, -np.sin(a) / scale, 0.0],
                      [np.sin(a) / scale, np.cos(a) / scale, 0.0]], dtype=torch.float32)[None]
    grid = F.affine_grid(m, [1, *img.shape], align_corners=False)
    return F.grid_sample(img[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]


def plant_copies(train01: np.ndarray, index: np.ndarray, strength: str, seed: int) -> tuple[np.ndarray, list[dict]]:
    """Edited copies of ``train01[index]``.

    Args:
        train01: ``(N, C, H, W)`` float32 in ``[0, 1]``.
        index: ``(M,)`` rows to copy.
        strength: ``exact`` | ``mild`` | ``moderate``.
        seed: the only source of randomness.

    Returns:
        ``(M, C, H, W)`` float32 in ``[0, 1]`` (multiples of 1/255) and the per-copy edit parameters.
    """
    if strength not in STRENGTHS:
        raise ValueError(f"strength must be one of {STRENGTHS}, got {strength!r}")
    rng = np.random.default_rng(seed)
    out, params = [], []
    for i in np.asarray(index, dtype=np.int64):
        x = torch.as_tensor(train01[i], dtype=torch.float32)
        c, h, w = x.shape
        p: dict = {"train_index": int(i), "strength": strength}
        if strength == "mild":
            dy, dx = (int(v) for v in rng.integers(-2, 3, size=2))
            gamma = float(rng.uniform(0.9, 1.1))
            noise = float(rng.uniform(0.01, 0.02))
            blur = float(rng.uniform(0.0, 0.7))
            xp = F.pad(x[None], (2, 2, 2, 2), mode="replicate")[0]
            x = xp[:, 2 - dy:2 - dy + h, 2 - dx:2 - dx + w]
            x = _gauss_blur(x.clamp(0, 1) ** gamma, blur)
            g = torch.Generator().manual_seed(int(rng.integers(2**31)))
            x = x + noise * torch.randn(x.shape, generator=g)
            p.update(shift=[dy, dx], gamma=gamma, noise=noise, blur=blur)
        elif strength == "moderate":
            op = ("rotate", "scale", "crop")[int(rng.integers(3))]
            if op == "rotate":
                ang = float(rng.uniform(-5, 5))
                x = _affine(x, ang, 1.0)
                p.update(op=op, angle=ang)
            elif op == "scale":
                s = float(rng.uniform(0.95, 1.05))
                x = _affine(x, 0.0, s)
                p.update(op=op, scale=s)
            else:
                ch, cw = int(round(0.9 * h)), int(round(0.9 * w))
                oy, ox = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
                x = F.interpolate(x[None, :, oy:oy + ch, ox:ox + cw], size=(h, w), mode="bilinear",
                                  align_corners=False)[0]
                p.update(op=op, crop=[oy, ox, ch, cw])
        out.append(x)
        params.append(p)
    if not out:
        return np.zeros((0, *train01.shape[1:]), np.float32), []
    return _requantize(torch.stack(out)), params


class MemorizingAE(nn.Module):
    """A small conditional autoencoder for ``(N, C, 28, 28)`` images in ``[0, 1]`` that overfits its training
    images (the "overfit generator" of the validation): two stride-2 convs -> ``z``-dim latent (+ a class
    embedding) -> two transposed convs -> sigmoid."""

    def __init__(self, c: int, n_classes: int, z: int = 32):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(c, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(64 * 7 * 7, z))
        self.emb = nn.Embedding(n_classes, z)
        self.dec = nn.Sequential(nn.Linear(z, 64 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
                                 nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, c, 4, 2, 1),
                                 nn.Sigmoid())

    def forward(self, x: torch.Tensor, y: torch.Tensor, noise: float = 0.0, g: torch.Generator | None = None):
        z = self.enc(x)
        if noise:
            z = z + noise * z.std() * torch.randn(z.shape, generator=g)
        return self.dec(z + self.emb(y))


def memorizing_generator(images01: np.ndarray, labels: np.ndarray, epochs: int, seed: int,
                         batch: int = 50, lr: float = 2e-3) -> tuple[MemorizingAE, float]:
    """Train :class:`MemorizingAE` on ``images01`` ``(N, C, 28, 28)`` (``labels`` ``(N,)`` int) for ``epochs``
    full passes (seeded); returns the model (eval mode) and the last batch's MSE."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.as_tensor(images01, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)
    model = MemorizingAE(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr)
    loss = torch.zeros(())
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            b = perm[i:i + batch]
            loss = ((model(x[b], y[b]) - x[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), float(loss.detach())


def memorized_samples(model: MemorizingAE, images01: np.ndarray, labels: np.ndarray, noise: float,
                      seed: int) -> np.ndarray:
    """One sample per training image: its latent plus ``noise`` x (latent std) Gaussian noise, decoded and
    re-quantized; ``(N, C, H, W)`` float32 in ``[0, 1]``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out = model(torch.as_tensor(images01, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long),
                    noise=noise, g=g)
    return _requantize(out)
