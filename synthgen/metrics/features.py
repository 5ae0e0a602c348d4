"""Domain feature extractor for the realism metrics, trained in-project on the real training split.

No Inception/ImageNet weights (none can be downloaded, and they fit medical images poorly): the
extractor is the shared classifier recipe (``classifier.py``) trained on the real training split,
class-balanced by default so that a rare class still gets discriminative features; its penultimate
layer (global-average-pooled, ``feature_dim`` dims) is the feature space of FD, KID and PRDC.

Training takes a minute on CPU, so the weights are cached on disk under
``<cache_dir>/feature_extractor-<key>.pt``, where ``key`` hashes the training images and labels, the
recipe (including the data source's declared symmetries, ``Recipe.symmetries`` from ``data.symmetries``,
which set the training augmentation), the seed and a format version: a different split, recipe or
symmetry declaration never reuses a stale extractor.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_path
from .classifier import Recipe, SmallResNet, build_model, class_balanced_weights, embed, train_classifier

log = logging.getLogger(__name__)

# 2: flips/rotations from data.symmetries (were evaluate.classifier.hflip/vflip, on by default).
FORMAT_VERSION = 2


def cache_key(images: np.ndarray, labels: np.ndarray, n_classes: int, recipe: Recipe, seed: int,
              balanced: bool) -> str:
    """16-hex-digit key of everything the extractor's weights depend on."""
    h = hashlib.sha256()
    images = np.ascontiguousarray(images)
    h.update(f"{images.dtype}{images.shape}".encode())
    h.update(images.tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    spec = {"recipe": recipe.to_dict(), "seed": int(seed), "balanced": bool(balanced), "n_classes": int(n_classes),
            "format": FORMAT_VERSION}
    h.update(json.dumps(spec, sort_keys=True).encode())
    return h.hexdigest()[:16]


class FeatureExtractor:
    """A trained :class:`SmallResNet` used through its penultimate layer.

    Attributes:
        model: the network (eval mode).
        key: the cache key it was trained/stored under.
        cached: whether it was loaded from the cache rather than trained now.
    """

    def __init__(self, model: SmallResNet, key: str, cached: bool):
        self.model, self.key, self.cached = model, key, cached

    @property
    def dim(self) -> int:
        return self.model.feature_dim

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """``(N, C, H, W)`` float in ``[0, 1]`` -> ``(N, dim)`` float64 features."""
        return embed(self.model, images)


def load_or_train(stored_images: np.ndarray, labels: np.ndarray, n_classes: int, recipe: Recipe, seed: int,
                  balanced: bool, cache_dir: str | Path | None, progress: Any = None) -> FeatureExtractor:
    """The extractor for this training split: from ``cache_dir`` if present there, else trained and stored.

    Args:
        stored_images: ``(N, C, H, W)`` uint8/uint16 training images as prepared (hashed as stored); volumes
            ``(N, C, D, H, W)`` train the 3D network (:mod:`.classifier`).
        labels: ``(N,)`` int64 labels.
        n_classes: number of classes.
        recipe: classifier recipe (its ``steps`` is the extractor's budget, its ``symmetries`` the
            augmentation group).
        seed: training seed.
        balanced: class-balanced sampling while training.
        cache_dir: folder for cached weights; ``None`` disables the cache.
    """
    key = cache_key(stored_images, labels, n_classes, recipe, seed, balanced)
    path = None if cache_dir is None else Path(cache_dir) / f"feature_extractor-{key}.pt"
    if path is not None and path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            model = build_model(recipe, int(blob["in_channels"]), int(blob["n_classes"]),
                                int(blob.get("spatial_dims", 2)))
            model.load_state_dict(blob["state_dict"])
            log.info("feature extractor from cache %s", path)
            return FeatureExtractor(model.eval(), key, cached=True)
        except Exception as e:  # a corrupt cache entry is retrained, never trusted
            log.warning("ignoring unreadable feature-extractor cache %s (%s)", path, e)
    top = float(np.iinfo(stored_images.dtype).max)
    images = torch.from_numpy(stored_images.astype(np.float32) / np.float32(top))
    weights = class_balanced_weights(labels, n_classes) if balanced else None
    model = train_classifier(images, labels, weights, n_classes, recipe, seed, progress)
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save({"state_dict": model.state_dict(), "in_channels": int(images.shape[1]),
                        "spatial_dims": int(images.dim() - 2),
                        "n_classes": int(n_classes), "recipe": recipe.to_dict(), "key": key}, tmp)
        log.info("feature extractor trained and cached at %s", path)
    return FeatureExtractor(model, key, cached=False)


__all__ = ["FeatureExtractor", "cache_key", "load_or_train"]
