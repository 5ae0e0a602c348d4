"""The prepare stage: read a source cohort, split it by patient, apply the rare-class cut, write
``data/prepared`` atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, InputError
from ..io import atomic_path
from .cohort import Cohort
from .prepared import class_counts, write_prepared
from .splits import SPLITS, carve_holdout, rare_cut, stratified_patient_split
from .symmetries import parse_symmetries

log = logging.getLogger(__name__)

# Keys of the ``data`` config group that belong to the prepare stage (or, ``symmetries``, to the stages that
# augment), not to the reader.
_STAGE_KEYS = ("name", "split", "rare", "symmetries")


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
    try:
        return instantiate(reader_cfg, _convert_="all")
    except Exception as e:  # Hydra wraps constructor errors; surface ours unchanged
        cause = e
        while cause.__cause__ is not None and not isinstance(cause, InputError):
            cause = cause.__cause__
        if isinstance(cause, InputError):
            raise cause from None
        raise


def assign_splits(cohort: Cohort, split_cfg: DictConfig | dict) -> np.ndarray:
    """Split names per image: the source's own split (holdout carved from test) or a fresh
    patient-level stratified split."""
    seed = int(split_cfg["seed"])
    if cohort.splits is not None:
        return carve_holdout(cohort.splits, cohort.labels, cohort.patient_ids,
                             float(split_cfg["holdout_from_test"]), seed)
    fractions = {k: float(split_cfg[k]) for k in ("val", "test", "holdout")}
    return stratified_patient_split(cohort.labels, cohort.patient_ids, fractions, seed)


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
    split_names = assign_splits(cohort, cfg.data.split)
    parts = {s: cohort.subset(split_names == s) for s in SPLITS}

    rare = cfg.data.rare
    rare_names = list(rare.classes or [])
    rare_info: dict[str, Any] = {"classes": rare_names, "keep": rare.keep}
    uncut = None
    if rare_names and rare.keep is not None:
        idx = _rare_class_indices(cohort, rare_names)
        keep = rare_cut(parts["train"].labels, idx, int(rare.keep), int(rare.seed))
        uncut = parts["train"]
        parts["train"] = uncut.subset(keep)
        rare_info["train_before_cut"] = {n: int((uncut.labels == i).sum()) for n, i in zip(rare_names, idx)}

    c, h, w = cohort.images.shape[1:]
    meta = {
        "class_names": cohort.class_names,
        "counts": {s: class_counts(p.labels, cohort.class_names) for s, p in parts.items()},
        "image_size": int(h), "channels": int(c), "dtype": cohort.storage_dtype,
        "source": {"kind": cohort.source_kind, "name": cfg.data.get("name", cohort.source_kind),
                   **{k: v for k, v in cohort.extra.items() if k in ("flavour", "modality")}},
        "normalization": cohort.normalization,
        "patients": {s: int(len(np.unique(p.patient_ids))) for s, p in parts.items()},
        "rare": rare_info,
        "split": OmegaConf.to_container(cfg.data.split, resolve=True),
    }
    with atomic_path(out_dir) as tmp:
        files = dict(parts)
        if uncut is not None:
            files["train_uncut"] = uncut
        write_prepared(tmp, files, meta)
    log.info("prepared %s: %s", out_dir, {s: len(p) for s, p in parts.items()})
    return out_dir
