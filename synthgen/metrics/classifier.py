"""The one classifier recipe used for every utility arm and as the domain feature extractor.

A compact ResNet-style CNN for medical images of 28-256 px: a 3x3 stem, then ``stages`` residual basic
blocks, each halving the resolution and doubling the width, global average pooling
(the *penultimate features*, ``width * 2**(len(stages)-1)`` dims) and a linear head.

Every arm trains for the same fixed number of optimizer steps (not epochs), so TRTR, TSTR and TR+S
get exactly the same compute whatever the size of their training pool. Batches are drawn with
replacement from per-image sampling weights (uniform, or class-balanced oversampling), with light
augmentation (integer shifts, plus random elements of the data source's declared symmetry group,
``data.symmetries``, via one affine ``grid_sample``), AdamW with linear warmup and cosine decay, and
bf16 autocast (about 2x faster convolutions on this CPU; measured in ``benchmarks/evaluate_classifier.py``).

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
        bf16: bf16 autocast for training and prediction (features are always fp32).
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
    bf16: bool = True
    symmetries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "symmetries", parse_symmetries(self.symmetries))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], symmetries: Any = (), image_shape: Sequence[int] | None = None,
                    **overrides: Any) -> "Recipe":
        """The recipe of an ``evaluate.classifier`` mapping with the data source's ``symmetries``
        (``cfg.data.symmetries``) and keyword ``overrides``, for images of ``image_shape`` ``(C, H, W)``: its
        null keys come from the mapping's ``presets`` row for that side (explicit values win).

        Raises:
            ConfigError: a key is still null (no ``image_shape``, or a preset row without it), or the side is
                larger than every preset.
        """
        values = dict(cfg)
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


class _Block(nn.Module):
    """Residual basic block ``cin -> cout`` at stride 2."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


class SmallResNet(nn.Module):
    """``(B, C, H, W)`` float in ``[0, 1]`` -> logits ``(B, n_classes)``; ``features`` gives the
    penultimate ``(B, feature_dim)`` embedding."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 32, stages: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks, c = [], width
        for i in range(stages):
            blocks.append(_Block(c, width * 2 ** i))
            c = width * 2 ** i
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = c
        self.head = nn.Linear(c, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) * 4.0  # [0, 1] -> about unit scale; BN does the rest
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(recipe: Recipe, in_channels: int, n_classes: int) -> SmallResNet:
    return SmallResNet(in_channels, n_classes, recipe.width, recipe.stages)


def _augment(x: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Augment a ``(B, C, H, W)`` batch in one exact (nearest-pixel) affine resampling; same shape and range.

    Each image gets a random element of the group of ``recipe.symmetries`` (identity when none are declared:
    never a flip or rotation then) and a random integer shift of up to ``recipe.shift`` pixels per axis,
    border pixels reflected.
    """
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
        images: ``(N, C, H, W)`` float32 in ``[0, 1]``.
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
    model = build_model(recipe, images.shape[1], n_classes)
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
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, recipe))
    model.train()
    for step in range(recipe.steps):
        idx = torch.as_tensor(draws[step])
        x = _augment(images[idx], recipe, gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16):
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
def predict_proba(model: SmallResNet, images: torch.Tensor, bf16: bool = True, batch: int = 1024) -> np.ndarray:
    """``(N, C, H, W)`` float in ``[0, 1]`` -> ``(N, n_classes)`` float64 softmax probabilities."""
    model.eval()
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
