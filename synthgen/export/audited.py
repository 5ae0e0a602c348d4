"""Read and check the audited cohort (``data/audited``), the only input the export stage accepts.

Contract (DEVELOPERS.md): ``cohort.npz`` holds ``images`` ``(N, C, H, W)`` uint8|uint16, ``labels`` ``(N,)``
int64, ``seeds`` ``(N,)`` int64, ``index`` ``(N,)`` int64 (row in the generated cohort, unique) and one
``privacy_<score>`` ``(N,)`` float32 array per privacy score (and, from the curate stage, one ``curate_<score>``
``(N,)`` float32 array per curation score); ``cohort.json`` holds the generator's provenance
(generator name, model target, checkpoint sha256, resolved config, class_names, per-class counts, synthgen
version, config hash) plus the gate's ``privacy`` summary (``passed``, ``thresholds``, ``n_flagged``, ...).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

PRIVACY_PREFIX = "privacy_"
CURATE_PREFIX = "curate_"


@dataclass
class AuditedCohort:
    """The audited cohort in memory.

    Attributes:
        images: ``(N, C, H, W)`` (volumes: ``(N, C, D, H, W)``) uint8 or uint16, the stored intensities
            (exported unchanged).
        labels: ``(N,)`` int64 in ``[0, len(class_names))``.
        seeds: ``(N,)`` int64, the generator seed of each sample.
        index: ``(N,)`` int64, unique row of each sample in the generated cohort.
        privacy: score name -> ``(N,)`` float32 (the ``privacy_<name>`` arrays).
        meta: the parsed ``cohort.json``.
        curation: score name -> ``(N,)`` float32 (the ``curate_<name>`` arrays; empty for a cohort that
            did not go through the curate stage).
    """

    images: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    index: np.ndarray
    privacy: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    curation: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.meta["class_names"]]

    @property
    def generator(self) -> str:
        """Generator name (``generator`` or ``generator_name``; a dict's ``name``)."""
        g = self.meta.get("generator", self.meta.get("generator_name", ""))
        if isinstance(g, dict):
            g = g.get("name", "")
        return str(g)

    @property
    def model_target(self) -> str:
        return str(self.meta.get("model_target", self.meta.get("target", "")))

    @property
    def checkpoint_sha256(self) -> str:
        return str(self.meta.get("checkpoint_sha256", ""))

    @property
    def config_hash(self) -> str:
        return str(self.meta.get("config_hash", ""))

    @property
    def synthgen_version(self) -> str:
        return str(self.meta.get("synthgen_version", self.meta.get("version", "")))

    @property
    def config(self) -> dict[str, Any]:
        """The resolved generator config recorded by the generate stage (``config`` or ``resolved_config``)."""
        c = self.meta.get("config", self.meta.get("resolved_config", {}))
        return c if isinstance(c, dict) else {}

    @property
    def privacy_summary(self) -> dict[str, Any]:
        return dict(self.meta.get("privacy", {}))


def load_audited(audited_dir: str | os.PathLike, require_pass: bool = True) -> AuditedCohort:
    """Load ``<audited_dir>/cohort.{npz,json}`` and check the contract.

    Raises:
        InputError: naming the file and the problem (missing file or key, wrong dtype/shape, labels out of
            range, duplicate ``index``, no ``privacy`` summary, or a gate that did not pass when
            ``require_pass``).
    """
    d = Path(audited_dir)
    npz_p, json_p = d / "cohort.npz", d / "cohort.json"
    for p in (npz_p, json_p):
        if not p.exists():
            raise InputError(p, "missing: run the privacy stage first (dvc repro privacy)")
    try:
        meta = json.loads(json_p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(json_p, f"not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise InputError(json_p, "expected a JSON object")
    names = meta.get("class_names")
    if not isinstance(names, list) or not names:
        raise InputError(json_p, "no class_names list")
    if not isinstance(meta.get("privacy"), dict):
        raise InputError(json_p, "no privacy summary: export takes only the privacy gate's output")
    if require_pass and meta["privacy"].get("passed") is not True:
        raise InputError(json_p, "privacy gate did not pass (privacy.passed is not true); refusing to export")
    try:
        z = np.load(npz_p, allow_pickle=False)
    except Exception as e:  # zipfile/ValueError: anything unreadable is bad input
        raise InputError(npz_p, f"unreadable npz ({e})") from e
    with z:
        for k in ("images", "labels", "seeds", "index"):
            if k not in z.files:
                raise InputError(npz_p, f"lacks key {k!r}")
        images, labels, seeds, index = z["images"], z["labels"], z["seeds"], z["index"]
        privacy = {k[len(PRIVACY_PREFIX):]: z[k].astype(np.float32) for k in sorted(z.files)
                   if k.startswith(PRIVACY_PREFIX)}
        curation = {k[len(CURATE_PREFIX):]: z[k].astype(np.float32) for k in sorted(z.files)
                    if k.startswith(CURATE_PREFIX)}
    n = len(images)
    if images.ndim not in (4, 5) or images.dtype not in (np.uint8, np.uint16):
        raise InputError(npz_p, f"images must be (N, C, H, W) (or volumes (N, C, D, H, W)) uint8|uint16, got "
                                f"{images.shape} {images.dtype}")
    if n == 0:
        raise InputError(npz_p, "the audited cohort is empty: nothing to export")
    scores = [(PRIVACY_PREFIX + s, v) for s, v in privacy.items()]
    scores += [(CURATE_PREFIX + s, v) for s, v in curation.items()]
    for k, a in [("labels", labels), ("seeds", seeds), ("index", index)] + scores:
        if a.shape != (n,):
            raise InputError(npz_p, f"{k} has shape {a.shape}, expected ({n},)")
    for k, a in (("labels", labels), ("seeds", seeds), ("index", index)):
        if not np.issubdtype(a.dtype, np.integer):
            raise InputError(npz_p, f"{k} must be integer, got {a.dtype}")
    if labels.min() < 0 or labels.max() >= len(names):
        raise InputError(npz_p, f"labels outside 0..{len(names) - 1}")
    if len(np.unique(index)) != n:
        raise InputError(npz_p, "index has duplicate entries (sample keys would collide)")
    if index.min() < 0:
        raise InputError(npz_p, "index has negative entries")
    return AuditedCohort(images=images, labels=labels.astype(np.int64), seeds=seeds.astype(np.int64),
                         index=index.astype(np.int64), privacy=privacy, meta=meta, curation=curation)
