"""Write the audited cohort as WebDataset shards ``<name>-%06d.tar`` plus their ``index.json`` entries.

Every sample carries the same four members (five for volumes; WebDataset key = everything before the first
dot, so keys are dot-free):

- ``<key>.npy``  the stored intensities ``(C, H, W)`` uint8|uint16, exactly as audited (``np.load``-able)
- ``<key>.png``  an 8-bit preview (see :func:`synthgen.export.encode.preview_8bit`; volumes: the central
  axial/coronal/sagittal slices, :func:`synthgen.export.volume.volume_preview`)
- ``<key>.nii.gz`` volumes only: the ``(C, D, H, W)`` sample as NIfTI with its spacing and RAS affine
  (:mod:`synthgen.export.volume`)
- ``<key>.cls``  the integer label as ASCII
- ``<key>.json`` class name, ``synthetic: true``, generator, synthgen version, checkpoint sha256, config hash,
  seed, row index in the generated cohort, this sample's privacy scores and (after the curate stage) its
  ``curation`` scores (``confidence``, ``realism``, ``nn_synthetic``)

Shards hold the bytes ``webdataset.ShardWriter(mtime=0)`` writes (fixed uid/gid/user names/mode; written by
:class:`synthgen.export.tarwriter.ShardTarWriter`, which needs a third of its CPU), in a stable order:
samples sorted by ``index``, then permuted with a seeded RNG (``export.seed``) so that every shard
mixes the classes (shard-level shuffling at read time then mixes well). Same cohort + same config ->
byte-identical shards.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .audited import AuditedCohort
from .tarwriter import ShardTarWriter
from .encode import KEY_PATTERN, NpyEncoder, SampleJson, encode_png, preview_8bit, provenance, sample_key
from .volume import volume_nifti_bytes, volume_preview

SHARD_PATTERN = "{name}-%06d.tar"


class _HashingFile:
    """A write-only file that hashes (sha256) and counts what passes through, so the index needs no re-read."""

    def __init__(self, path: str):
        self._f = open(path, "wb")
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def sample_order(cohort: AuditedCohort, shuffle: bool, seed: int) -> np.ndarray:
    """Row order of the export: by ``index``; then a permutation seeded by ``seed`` if ``shuffle``."""
    order = np.argsort(cohort.index, kind="stable")
    if shuffle:
        order = order[np.random.default_rng(seed).permutation(len(order))]
    return order


def write_shards(cohort: AuditedCohort, out_dir: str | os.PathLike, name: str, max_samples: int,
                 max_bytes: float | None, shuffle: bool = True, seed: int = 0,
                 png_level: int = 1, spacing: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """Write ``out_dir/<name>-%06d.tar`` and return one index entry per shard.

    Args:
        cohort: the audited cohort (images ``(N, C, H, W)`` uint8|uint16).
        out_dir: an existing folder (the export's temp folder).
        name: export name; ``[A-Za-z0-9_-]+`` (it starts every file name and sample key).
        max_samples: most samples per shard (ShardWriter's ``maxcount``).
        max_bytes: a shard is closed once its payload reaches this many bytes (``maxsize``; None = no limit).
        shuffle, seed: see :func:`sample_order`.
        png_level: deflate level of the previews (ISA-L 0-3, see encode_png).
        spacing: ``[sz, sy, sx]`` mm of volumes (needed for ``(N, C, D, H, W)`` cohorts: each sample then
            also carries ``nii.gz`` and its preview is the three-plane grid of :mod:`synthgen.export.volume`).

    Returns:
        ``[{"path", "sha256", "bytes", "samples", "classes": {class_name: count}}]`` in shard order; ``path``
        is relative to ``out_dir``.
    """
    if not KEY_PATTERN.match(name):
        raise ValueError(f"export name {name!r} must match [A-Za-z0-9_-]+ (no dots)")
    out_dir = Path(out_dir)
    volumes = cohort.images.ndim == 5
    if volumes and spacing is None:
        raise ValueError("a volume cohort needs its spacing [sz, sy, sx] (prepared meta.json) to be exported")
    names = cohort.class_names
    npy = NpyEncoder(cohort.images.shape[1:], cohort.images.dtype)
    score_names = sorted(cohort.privacy)
    curation_names = sorted(cohort.curation) or None
    meta_json = SampleJson(provenance(cohort), names, score_names, curation_names)
    scores = np.stack([cohort.privacy[s] for s in score_names], axis=1) if score_names else None
    curation = np.stack([cohort.curation[s] for s in curation_names], axis=1) if curation_names else None
    per_shard: dict[str, dict[str, int]] = {}
    open_files: dict[str, _HashingFile] = {}
    done: list[dict[str, Any]] = []

    def opener(fname: str) -> "_HashingFile":
        open_files[fname] = _HashingFile(fname)
        return open_files[fname]

    def finished(fname: str) -> None:
        f = open_files.pop(fname)
        f.close()
        done.append({"path": Path(fname).name, "sha256": f.sha256.hexdigest(), "bytes": f.size,
                     "samples": sum(per_shard.get(fname, {}).values()),
                     "classes": {c: per_shard.get(fname, {}).get(c, 0) for c in names}})

    pattern = str(out_dir / SHARD_PATTERN.format(name=name))
    writer = ShardTarWriter(pattern, maxcount=int(max_samples), maxsize=float(max_bytes or 1e18),
                            post=finished, opener=opener)
    try:
        for i in sample_order(cohort, shuffle, seed):
            label, idx = int(cohort.labels[i]), int(cohort.index[i])
            image = cohort.images[i]
            row = () if scores is None else scores[i]
            sample = {
                "__key__": sample_key(name, names[label], idx),
                "cls": str(label).encode("ascii"),
                "json": meta_json(label, int(cohort.seeds[i]), idx, row, () if curation is None else curation[i]),
                "npy": npy(image),
                "png": encode_png(volume_preview(image) if volumes else preview_8bit(image), png_level),
            }
            if volumes:
                sample["nii.gz"] = volume_nifti_bytes(image, spacing)
            # A shard is closed before the sample that would exceed its limits: note the file the sample
            # lands in only after the write.
            writer.write(sample)
            counts = per_shard.setdefault(writer.fname, {})
            counts[names[label]] = counts.get(names[label], 0) + 1
    finally:
        writer.close()
    return done
