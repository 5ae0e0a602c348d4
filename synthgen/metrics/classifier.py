"""The one classifier recipe used for every utility arm and as the domain feature extractor.

A compact ResNet-style CNN for medical images of 28-256 px: a 3x3 stem, then ``stages`` residual basic
blocks, each halving the resolution and doubling the width, global average pooling
(the *penultimate features*, ``width * 2**(len(stages)-1)`` dims) and a linear head. Volumes
``(N, C, D, H, W)`` (``data.dims=3``) get the same network with 3x3x3 convolutions and 3D BatchNorm (chosen from
the input's dimensionality), integer shifts along all three axes, no symmetry augmentation and no bf16: with
bf16 autocast the 3D network's weight gradients went non-finite within two steps on AMD EPYC (a 16^3 test cohort,
width 4: ``blocks.2.conv2`` at 2x2x2 voxels), so volumes train and predict in float32 whatever ``Recipe.bf16`` says.

Every arm trains for the same fixed number of optimizer steps (not epochs), so TRTR, TSTR and TR+S
get exactly the same compute whatever the size of their training pool. Batches are drawn with
replacement from per-image sampling weights (uniform, or class-balanced oversampling), with light
augmentation (integer shifts, plus random elements of the data source's declared symmetry group,
``data.symmetries``, via one affine ``grid_sample``), AdamW with linear warmup and cosine decay, and
bf16 autocast where the CPU has bf16 natively (AVX-512-BF16/AMX: ~1.7x faster convolutions; an AVX2-only CPU
emulates bf16 ~13x slower than float32, so ``bf16="auto"``, the default, trains in float32 there; measured in
``benchmarks/evaluate_classifier.py``, resolved by :mod:`synthgen.precision`).

Flips and rotations are NOT assumed: they change the label of lateralized classes (left/right kidney,
femur), and a classifier trained with them cannot learn laterality. They come only from the data source's
``data.symmetries`` (default none, ``synthgen/data/symmetries.py``), passed in as ``Recipe.symmetries``.

Determinism: the seed fixes the weight init, the batch draws and the augmentation parameters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.symmetries import check_shape, parse_symmetries, random_matrices
from ..errors import ConfigError
from ..precision import bf16_setting, use_bf16
from ..sizing import apply_presets, image_side, missing_after_presets


@dataclass(frozen=True)
class Recipe:
    """Classifier architecture + training budget (``evaluate.classifier`` in the config, plus ``symmetries``).

    The defaults equal ``conf/evaluate/default.yaml`` at the default 28 px and ``conf/data/_common.yaml`` (the
    YAML is the source of defaults; ``tests/test_symmetries.py`` checks that they agree). In the YAML
    ``width``, ``stages``, ``batch_size`` and ``shift`` are null = from ``evaluate.classifier.presets`` for the
    image side (:mod:`synthgen.sizing`: stages grow with the side so the last map stays ~4 px).

    Attributes:
        width: channels of the stem and the first block.
        stages: number of stride-2 residual blocks (28 px -> 14 -> 7 -> 4 with 3; 128 px -> 4 with 5).
        steps: optimizer steps per training run (the budget, identical for every arm).
        batch_size: images per step.
        lr: peak AdamW learning rate; ``warmup`` is the share of steps with a linear ramp.
        weight_decay: AdamW weight decay.
        label_smoothing: cross-entropy label smoothing.
        shift: max integer translation in pixels (random, per image and axis).
        bf16: bf16 autocast for training and prediction (features are always fp32): ``True``, ``False`` or
            ``"auto"`` (where this CPU has bf16 natively). Resolved when the recipe is made, so the attribute
            (and ``to_dict``, the cache key, ``metrics/evaluate.json``) holds the precision that ran.
        symmetries: the data source's label-preserving symmetries (``data.symmetries``: names from
            ``hflip``, ``vflip``, ``rot90``); each training image gets a uniformly random element of the group
            they generate. ``()`` = none (no flip, no rotation).
    """

    width: int = 32
    stages: int = 3
    steps: int = 300
    batch_size: int = 128
    lr: float = 2e-3
    warmup: float = 0.1
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    shift: int = 2
    bf16: bool | str = "auto"
    symmetries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "symmetries", parse_symmetries(self.symmetries))
        object.__setattr__(self, "bf16", use_bf16(bf16_setting(self.bf16, "evaluate.classifier.bf16"), "cpu"))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], symmetries: Any = (), image_shape: Sequence[int] | None = None,
                    **overrides: Any) -> "Recipe":
        """The recipe of an ``evaluate.classifier`` mapping with the data source's ``symmetries``
        (``cfg.data.symmetries``) and keyword ``overrides``, for inputs of ``image_shape`` ``(C, H, W)`` (or
        ``(C, D, H, W)`` volumes): for volumes the mapping's ``volumes`` entry first replaces the keys it names
        (a 3D network of the 2D width and batch would cost ~30x more per step at 32^3); then its null keys come
        from the ``presets`` row for the image side (explicit values win).

        Raises:
            ConfigError: a key is still null (no ``image_shape``, or a preset row without it), or the side is
                larger than every preset.
        """
        values = dict(cfg)
        volumes = values.pop("volumes", None)
        if image_shape is not None and len(image_shape) == 4:
            values.update(dict(volumes or {}))
        side = image_side(image_shape) if image_shape is not None else None
        values = apply_presets(values, side, "evaluate.classifier.presets")
        removed = [k for k in ("hflip", "vflip") if k in values]
        if removed:
            raise ConfigError(f"evaluate.classifier.{removed[0]}", "removed: flips change the label of lateralized "
                              "classes; declare the data source's symmetries in data.symmetries instead")
        known = {f for f in cls.__dataclass_fields__} - {"symmetries"}
        values = {k: v for k, v in values.items() if k in known}
        values.update(overrides)
        missing_after_presets(values, sorted(known), "evaluate.classifier", side)
        return cls(**values, symmetries=parse_symmetries(symmetries))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layers(spatial_dims: int) -> tuple[type[nn.Module], type[nn.Module]]:
    """``(Conv, BatchNorm)`` classes for 2D images or 3D volumes."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return (nn.Conv2d, nn.BatchNorm2d) if spatial_dims == 2 else (nn.Conv3d, nn.BatchNorm3d)


class _Block(nn.Module):
    """Residual basic block ``cin -> cout`` at stride 2."""

    def __init__(self, cin: int, cout: int, spatial_dims: int = 2):
        super().__init__()
        conv, bn = _layers(spatial_dims)
        self.conv1 = conv(cin, cout, 3, 2, 1, bias=False)
        self.bn1 = bn(cout)
        self.conv2 = conv(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = bn(cout)
        self.skip = nn.Sequential(conv(cin, cout, 1, 2, bias=False), bn(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


class SmallResNet(nn.Module):
    """``(B, C, H, W)`` (``spatial_dims=3``: ``(B, C, D, H, W)``) float in ``[0, 1]`` -> logits
    ``(B, n_classes)``; ``features`` gives the penultimate ``(B, feature_dim)`` embedding."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 32, stages: int = 3, spatial_dims: int = 2):
        super().__init__()
        conv, bn = _layers(spatial_dims)
        self.spatial_dims = int(spatial_dims)
        self.stem = nn.Sequential(conv(in_channels, width, 3, 1, 1, bias=False), bn(width), nn.ReLU())
        blocks, c = [], width
        for i in range(stages):
            blocks.append(_Block(c, width * 2 ** i, spatial_dims))
            c = width * 2 ** i
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = c
        self.head = nn.Linear(c, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) * 4.0  # [0, 1] -> about unit scale; BN does the rest
        return self.blocks(self.stem(x)).mean(dim=tuple(range(2, x.dim())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(recipe: Recipe, in_channels: int, n_classes: int, spatial_dims: int = 2) -> SmallResNet:
    return SmallResNet(in_channels, n_classes, recipe.width, recipe.stages, spatial_dims)


def _augment_volume(x: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Random integer shifts of up to ``recipe.shift`` voxels per axis (reflected borders, nearest voxel) for a
    ``(B, C, D, H, W)`` batch; declared symmetries are 2D notions and are refused for volumes."""
    if recipe.symmetries:
        raise ConfigError("data.symmetries", f"{list(recipe.symmetries)} are 2D symmetries; volumes "
                                             "(data.dims=3) take none: set data.symmetries=[]")
    if recipe.shift <= 0:
        return x
    b = x.shape[0]
    theta = torch.zeros(b, 3, 4)
    theta[:, :, :3] = torch.eye(3)
    for axis, size in enumerate(reversed(x.shape[2:])):  # theta's columns are (x, y, z) = (W, H, D)
        theta[:, axis, 3] = torch.randint(-recipe.shift, recipe.shift + 1, (b,), generator=gen).float() * (2.0 / size)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="reflection", align_corners=False)


def _augment(x: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Augment a ``(B, C, H, W)`` batch in one exact (nearest-pixel) affine resampling; same shape and range.

    Each image gets a random element of the group of ``recipe.symmetries`` (identity when none are declared:
    never a flip or rotation then) and a random integer shift of up to ``recipe.shift`` pixels per axis,
    border pixels reflected. Volumes ``(B, C, D, H, W)``: :func:`_augment_volume`.
    """
    if x.dim() == 5:
        return _augment_volume(x, recipe, gen)
    b, _, h, w = x.shape
    if recipe.shift <= 0 and not recipe.symmetries:
        return x
    check_shape(recipe.symmetries, h, w)
    lin = random_matrices(b, recipe.symmetries, gen)
    dx = torch.randint(-recipe.shift, recipe.shift + 1, (b,), generator=gen).float() * (2.0 / w)
    dy = torch.randint(-recipe.shift, recipe.shift + 1, (b,), generator=gen).float() * (2.0 / h)
    theta = torch.zeros(b, 2, 3)
    theta[:, :, :2] = lin
    theta[:, 0, 2], theta[:, 1, 2] = dx, dy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="reflection", align_corners=False)


def _lr_factor(step: int, recipe: Recipe) -> float:
    warm = max(1, int(recipe.warmup * recipe.steps))
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, recipe.steps - warm)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def train_classifier(images: torch.Tensor, labels: np.ndarray, weights: np.ndarray | None, n_classes: int,
                     recipe: Recipe, seed: int, progress: Any = None,
                     init_state: Mapping[str, torch.Tensor] | None = None) -> SmallResNet:
    """Train one classifier.

    Args:
        images: ``(N, C, H, W)`` float32 in ``[0, 1]``, or volumes ``(N, C, D, H, W)`` (3D network).
        labels: ``(N,)`` int64 in ``[0, n_classes)``.
        weights: ``(N,)`` non-negative sampling weights (need not sum to 1); ``None`` = uniform.
        n_classes: number of output classes.
        recipe: architecture and budget.
        seed: fixes init, batch draws and augmentation.
        progress: optional callable ``progress(n_steps_done)`` (e.g. a tqdm update).
        init_state: optional ``state_dict`` of a model of the same recipe to start from instead of the
            seeded random init (a warm start: the boost plan continues one pretrained model per seed).

    Returns:
        The trained model in eval mode.
    """
    if len(images) == 0:
        raise ValueError("no training images")
    torch.manual_seed(seed)
    model = build_model(recipe, images.shape[1], n_classes, images.dim() - 2)
    if init_state is not None:
        model.load_state_dict(init_state)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    p = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        p = w / w.sum()
    draws = rng.choice(len(images), size=(recipe.steps, recipe.batch_size), replace=True, p=p)
    y_all = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    bf16 = recipe.bf16 and images.dim() == 4  # resolved by Recipe; volumes: float32 (module docstring)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, recipe))
    model.train()
    for step in range(recipe.steps):
        idx = torch.as_tensor(draws[step])
        x = _augment(images[idx], recipe, gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y_all[idx], label_smoothing=recipe.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(1)
    return model.eval()


@torch.no_grad()
def predict_proba(model: SmallResNet, images: torch.Tensor, bf16: bool | str = "auto",
                  batch: int = 1024) -> np.ndarray:
    """``(N, C, H, W)`` float in ``[0, 1]`` -> ``(N, n_classes)`` float64 softmax probabilities (``bf16``: a
    recipe's resolved ``bf16``, or ``"auto"``; volumes ``(N, C, D, H, W)``: float32 whatever ``bf16`` says, see
    the module docstring)."""
    model.eval()
    bf16 = use_bf16(bf16, "cpu") and images.dim() == 4
    out = []
    for i in range(0, len(images), batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(images[i:i + batch])
        out.append(torch.softmax(logits.float(), dim=1).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.head.out_features))


@torch.no_grad()
def embed(model: SmallResNet, images: torch.Tensor, batch: int = 1024) -> np.ndarray:
    """``(N, C, H, W)`` float in ``[0, 1]`` -> ``(N, feature_dim)`` float64 penultimate features (fp32 math)."""
    model.eval()
    out = [model.features(images[i:i + batch]).double().numpy() for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.feature_dim))


def class_balanced_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-image weights giving every present class the same total mass (oversampling)."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return 1.0 / counts[labels]


__all__ = ["Recipe", "SmallResNet", "build_model", "class_balanced_weights", "embed", "predict_proba",
           "train_classifier"]
