"""Per-sample curation scores in the feature space of the domain classifier (``synthgen.metrics.features``).

The classifier is the evaluate stage's domain feature extractor: the shared recipe trained on the REAL
training split only (class-balanced), cached by a hash of that split and the recipe, so the curate and
evaluate stages share one trained model. Two scores come from it:

* ``confidence`` = ``p(y | x)``: the classifier's softmax probability of the sample's intended class ``y``,
  in ``[0, 1]``. An off-class sample (a "basophil" that looks like a neutrophil) scores low.
* ``realism`` = ``min_r d(x, r) / r_k(r)`` over the real training images ``r`` of class ``y``, where ``d`` is
  the Euclidean distance between penultimate features and ``r_k(r)`` the distance from ``r`` to its ``k``-th
  nearest real neighbour of the class (PRDC's manifold, Naeem et al. 2020), in ``[0, inf)``. ``<= 1`` means
  ``x`` lies inside some real image's k-NN ball (PRDC precision counts exactly those); noise, blank images and
  images of another modality land far outside (often ``>> 1``) even where the softmax is confidently wrong.

The third score, similarity to the nearest other kept synthetic sample, depends on which samples are kept
and lives in :mod:`.filter`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..metrics.features import FeatureExtractor
from ..metrics.prdc import kth_radius, pairwise_distances

#: a real image whose k-NN radius is 0 (k exact duplicates of it) is given this radius instead.
MIN_RADIUS = 1e-8


@dataclass
class ClassifierScores:
    """``confidence`` ``(N,)`` float32 in ``[0, 1]``, ``realism`` ``(N,)`` float32 in ``[0, inf]`` (inf where
    the class has fewer than 2 real training images) and the features ``(N, D)`` float64 they came from."""

    confidence: np.ndarray
    realism: np.ndarray
    features: np.ndarray


def confidence(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``proba`` ``(N, K)`` softmax rows, ``labels`` ``(N,)`` in ``[0, K)`` -> ``(N,)`` float32 ``p(label)``."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.asarray(proba, dtype=np.float64)[np.arange(len(labels)), labels].astype(np.float32)


def realism(features: np.ndarray, labels: np.ndarray, real_features: np.ndarray, real_labels: np.ndarray,
            k: int = 5, chunk: int = 2048) -> np.ndarray:
    """``min_r d(x, r) / r_k(r)`` over the real images ``r`` of each sample's class (module docstring).

    Args:
        features: ``(N, D)`` features of the samples; labels ``(N,)`` int64.
        real_features: ``(M, D)`` features of the real training images; real_labels ``(M,)``.
        k: neighbour rank of the radius; a class with ``n <= k`` real images uses ``k = n - 1``.
        chunk: samples per distance block (memory ``O(chunk * M_c)``).

    Returns:
        ``(N,)`` float32 in ``[0, inf]``; ``inf`` for a class with fewer than 2 real images.
    """
    labels = np.asarray(labels, dtype=np.int64)
    real_labels = np.asarray(real_labels, dtype=np.int64)
    out = np.full(len(labels), np.inf, dtype=np.float64)
    for c in np.unique(labels):
        real_c = real_features[real_labels == c]
        if len(real_c) < 2:
            continue
        radius = kth_radius(real_c, min(int(k), len(real_c) - 1)).clamp_min(MIN_RADIUS)
        rows = np.flatnonzero(labels == c)
        for lo in range(0, len(rows), chunk):
            part = rows[lo:lo + chunk]
            d = pairwise_distances(features[part], real_c)  # (n, M_c)
            out[part] = (d / radius[None, :]).min(dim=1).values.numpy()
    return out.astype(np.float32)


def classifier_scores(extractor: FeatureExtractor, images: torch.Tensor, labels: np.ndarray,
                      real_features: np.ndarray, real_labels: np.ndarray, k: int = 5,
                      bf16: bool = True) -> ClassifierScores:
    """Both classifier scores of ``images`` ``(N, C, H, W)`` float in ``[0, 1]`` with intended ``labels``.

    ``real_features`` ``(M, D)`` = ``extractor(real training images)`` (computed once by the caller). One
    forward pass: the softmax is the classifier's head applied to the fp32 features (``bf16`` is accepted
    for the recipe's signature and not used: fp32 keeps the scores independent of a CPU's bf16 kernels).
    """
    feats = extractor(images)
    with torch.no_grad():  # the head on the fp32 features: one forward pass for both scores
        logits = extractor.model.head(torch.from_numpy(feats).float())
        proba = torch.softmax(logits, dim=1).double().numpy()
    return ClassifierScores(confidence(proba, labels), realism(feats, labels, real_features, real_labels, k), feats)


__all__ = ["ClassifierScores", "classifier_scores", "confidence", "realism"]
