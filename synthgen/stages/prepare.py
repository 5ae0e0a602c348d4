"""The prepare stage: read a source cohort, split it (see :mod:`synthgen.data.splits` for the policy),
apply the rare-class cut, measure near-duplicates across the splits, write ``data/prepared`` atomically."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, InputError, wrapped_input_error
from ..io import atomic_path
from ..data.cohort import Cohort
from ..data.near_duplicates import format_table, near_duplicate_table
from ..data.prepared import class_counts, write_prepared
from ..data.splits import (SPLITS, carve_holdout, privacy_reference_split, rare_cut, split_policy,
                     stratified_patient_split)
from ..data.symmetries import parse_symmetries

log = logging.getLogger(__name__)

# Keys of the ``data`` config group that belong to the prepare stage (or, ``symmetries``, to the stages that
# augment), not to the reader.
_STAGE_KEYS = ("name", "split", "rare", "symmetries", "dims", "volume")
# Keys of the 2D readers that their volume twins (data.dims=3) do not take.
_2D_ONLY_KEYS = ("slice_axis", "multiframe")
# Readers that read volumes only (their YAML sets dims: 3).
_3D_ONLY_TARGETS = ("synthgen.data.phantom3d.Phantom3DReader",)


def _dims(data_cfg: DictConfig) -> int:
    dims = data_cfg.get("dims", 2)
    if dims not in (2, 3):
        raise ConfigError("data.dims", f"expected 2 (images) or 3 (volumes), got {dims!r}")
    return int(dims)


def _volume_reader(reader_cfg: dict, data_cfg: DictConfig) -> dict:
    """``data.dims=3``: the reader config of the volume twin of the configured reader (see
    :data:`synthgen.data.volumes.VOLUME_READERS`), with ``volume`` (``data.volume``) added."""
    from ..data.volumes import VOLUME_READERS

    target = reader_cfg["_target_"]
    if target not in _3D_ONLY_TARGETS:
        if target not in VOLUME_READERS:
            raise ConfigError("data.dims", f"data={data_cfg.get('name', '?')} reads 2D images only; volumes "
                                           "(dims=3) come from data=nifti, data=dicom or data=demo3d")
        reader_cfg = {k: v for k, v in reader_cfg.items() if k not in _2D_ONLY_KEYS}
        reader_cfg["_target_"] = VOLUME_READERS[target]
    reader_cfg["volume"] = OmegaConf.to_container(data_cfg.volume, resolve=True)
    return reader_cfg


def build_reader(data_cfg: DictConfig) -> Any:
    """Instantiate the reader named by ``data._target_`` with the group's reader keys."""
    from hydra.utils import instantiate

    missing = [k for k in data_cfg if k not in _STAGE_KEYS and OmegaConf.is_missing(data_cfg, k)]
    if missing:
        raise ConfigError(f"data.{missing[0]}", f"required for data={data_cfg.get('name', '?')}: "
                                                f"pass data.{missing[0]}=... (see conf/data/)")
    reader_cfg = {k: v for k, v in OmegaConf.to_container(data_cfg, resolve=True).items()
                  if k not in _STAGE_KEYS}
    if "_target_" not in reader_cfg:
        raise ConfigError("data._target_", "no reader class configured")
    if _dims(data_cfg) == 3:
        reader_cfg = _volume_reader(reader_cfg, data_cfg)
    elif reader_cfg["_target_"] in _3D_ONLY_TARGETS:
        raise ConfigError("data.dims", f"data={data_cfg.get('name', '?')} is a volume cohort: set data.dims=3")
    try:
        return instantiate(reader_cfg, _convert_="all")
    except Exception as e:  # Hydra wraps constructor errors; surface ours (one line) unchanged
        ours = wrapped_input_error(e)
        if ours is None:
            raise
        raise ours from None


def assign_splits(cohort: Cohort, split_cfg: DictConfig | dict) -> np.ndarray:
    """Split names per image: the source's official split kept (test whole, holdout carved from val) or,
    without one, a fresh class-stratified split (patient-level when the cohort has patient ids)."""
    seed = int(split_cfg["seed"])
    if cohort.splits is not None:
        share = float(split_cfg["holdout_from_val"])
        if not 0.0 < share < 1.0:
            raise ConfigError("data.split.holdout_from_val", f"{share} must lie strictly between 0 and 1 "
                                                             "(the holdout and the rest of val both need images)")
        return carve_holdout(cohort.splits, cohort.labels, cohort.patient_ids, share, seed)
    fractions = {k: float(split_cfg[k]) for k in ("val", "test", "holdout")}
    if any(v < 0 for v in fractions.values()) or sum(fractions.values()) >= 1.0:
        raise ConfigError("data.split", f"val/test/holdout shares {fractions} must be >= 0 and leave room for train")
    return stratified_patient_split(cohort.labels, cohort.patient_ids, fractions, seed)


def _near_copy_threshold(split_cfg: DictConfig | dict) -> float | None:
    value = split_cfg.get("near_copy_pearson")
    if value is None:
        return None
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not -1.0 < threshold <= 1.0:
        raise ConfigError("data.split.near_copy_pearson", f"{value!r} is not a correlation in (-1, 1] (or null)")
    return threshold


def near_duplicates(parts: dict[str, Cohort], threshold: float | None) -> dict[str, Any] | None:
    """The near-duplicate table across splits (:mod:`synthgen.data.near_duplicates`), logged with its time;
    None when ``threshold`` (``data.split.near_copy_pearson``) is None."""
    if threshold is None:
        log.info("near-duplicate check across splits skipped (data.split.near_copy_pearson is null)")
        return None
    t0 = time.perf_counter()
    table = near_duplicate_table({s: p.images for s, p in parts.items()}, threshold)
    log.info("%s\n  (%.1f s)", format_table(table), time.perf_counter() - t0)
    return table


def _rare_class_indices(cohort: Cohort, names: list[str]) -> list[int]:
    unknown = [n for n in names if n not in cohort.class_names]
    if unknown:
        raise ConfigError("data.rare.classes", f"unknown class {unknown}; classes are {cohort.class_names}")
    return [cohort.class_names.index(n) for n in names]


def prepare(cfg: DictConfig, out_dir: str | Path | None = None) -> Path:
    """Run the whole prepare stage for a composed config; returns the written folder."""
    out_dir = Path(out_dir or cfg.paths.prepared)
    parse_symmetries(cfg.data.get("symmetries"))  # a bad declaration fails here, the first stage, not at evaluate
    reader = build_reader(cfg.data)
    cohort: Cohort = reader.read()
    if len(cohort) == 0:
        raise InputError(getattr(reader, "labels", None) or getattr(reader, "path", None), "no images")
    split_cfg = cfg.data.split
    threshold = _near_copy_threshold(split_cfg)
    split_names = assign_splits(cohort, split_cfg)
    parts = {s: cohort.subset(split_names == s) for s in SPLITS}

    rare = cfg.data.rare
    rare_names = list(rare.classes or [])
    rare_info: dict[str, Any] = {"classes": rare_names, "keep": rare.keep}
    idx = _rare_class_indices(cohort, rare_names)
    # Config checked: from here on nothing is refused, so the log can speak.
    official = cohort.splits is not None
    policy = split_policy(cohort.has_patient_ids, official, split_cfg)
    if not cohort.has_patient_ids:
        log.warning("%s has no patient ids: every image counts as its own patient, so images of one scan or "
                    "patient can sit in more than one split%s", cohort.source_kind or "the source",
                    " (the official splits are kept whole apart from val)" if official else "")
    log.info("split policy: %s", policy)
    uncut = None
    if rare_names and rare.keep is not None:
        keep = rare_cut(parts["train"].labels, idx, int(rare.keep), int(rare.seed))
        uncut = parts["train"]
        parts["train"] = uncut.subset(keep)
        rare_info["train_before_cut"] = {n: int((uncut.labels == i).sum()) for n, i in zip(rare_names, idx)}

    dups = near_duplicates(parts, threshold)
    c, h, w = cohort.images.shape[1], cohort.images.shape[-2], cohort.images.shape[-1]
    meta = {
        "class_names": cohort.class_names,
        "counts": {s: class_counts(p.labels, cohort.class_names) for s, p in parts.items()},
        "image_size": int(h), "channels": int(c), "dtype": cohort.storage_dtype,
        "source": {"kind": cohort.source_kind, "name": cfg.data.get("name", cohort.source_kind),
                   **{k: v for k, v in cohort.extra.items() if k in ("flavour", "modality")}},
        "normalization": cohort.normalization,
        "patient_ids": bool(cohort.has_patient_ids),
        # Without real ids the stand-in ids count images, not patients.
        "patients": ({s: int(len(np.unique(p.patient_ids))) for s, p in parts.items()}
                     if cohort.has_patient_ids else None),
        "split_policy": policy,
        "privacy_reference_split": privacy_reference_split(cohort.has_patient_ids),
        "near_duplicates": dups,
        "rare": rare_info,
        "split": OmegaConf.to_container(split_cfg, resolve=True),
    }
    if cohort.images.ndim == 5:  # volumes: the shared 3D contract (absent dims = 2, so 2D meta is unchanged)
        meta.update(dims=3, volume_shape=[int(n) for n in cohort.images.shape[2:]],
                    spacing=[float(s) for s in cohort.extra["spacing"]],
                    spacing_spread=cohort.extra.get("spacing_spread"))
    with atomic_path(out_dir) as tmp:
        files = dict(parts)
        if uncut is not None:
            files["train_uncut"] = uncut
        write_prepared(tmp, files, meta)
    log.info("prepared %s: %s", out_dir, {s: len(p) for s, p in parts.items()})
    return out_dir
