"""Exact duplicates: images identical after quantization to a common integer dtype, found by hashing.

A lossless re-encode (PNG, npy, uint8 -> float -> uint8) leaves the quantized pixels unchanged, so the
BLAKE2b digest of the quantized bytes (plus the shape) identifies it in O(N) without any pairwise search.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np

_TOP = {"uint8": 255, "uint16": 65535}


def quantize01(images01: np.ndarray, dtype: str = "uint8") -> np.ndarray:
    """Float ``[0, 1]`` ``(N, C, H, W)`` (or ``(N, C, D, H, W)``) -> integer ``dtype`` (rounded, not truncated)."""
    if dtype not in _TOP:
        raise ValueError(f"quantize dtype must be uint8 or uint16, got {dtype!r}")
    return np.rint(np.clip(images01, 0.0, 1.0) * _TOP[dtype]).astype(dtype)


def image_hashes(quantized: np.ndarray) -> list[bytes]:
    """One 16-byte BLAKE2b digest per image of ``(N, ...)`` integer pixels (shape and dtype included)."""
    head = f"{quantized.shape[1:]}{quantized.dtype}".encode()
    return [hashlib.blake2b(head + np.ascontiguousarray(x).tobytes(), digest_size=16).digest() for x in quantized]


def hash_images(images01: np.ndarray, dtype: str = "uint8", chunk: int = 1024) -> list[bytes]:
    """:func:`image_hashes` of :func:`quantize01` pixels, ``chunk`` images at a time (bounded memory at size)."""
    out: list[bytes] = []
    for i in range(0, len(images01), chunk):
        out += image_hashes(quantize01(images01[i:i + chunk], dtype))
    return out


def match_exact(query_hashes: list[bytes], base_hashes: list[bytes]) -> np.ndarray:
    """``(Nq,)`` int64: the lowest base index with the same hash as each query, ``-1`` when none."""
    first: dict[bytes, int] = {}
    for i, h in enumerate(base_hashes):
        first.setdefault(h, i)
    return np.array([first.get(h, -1) for h in query_hashes], dtype=np.int64)


def duplicate_groups(hashes: list[bytes]) -> list[list[int]]:
    """Groups (sorted, size >= 2) of indices with identical hashes inside one set, sorted by first index."""
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        groups[h].append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def duplicate_pairs(groups: list[list[int]]) -> list[tuple[int, int]]:
    """Every (first, other) pair of each duplicate group: ``[[1, 5, 9]] -> [(1, 5), (1, 9)]``."""
    return [(g[0], j) for g in groups for j in g[1:]]
