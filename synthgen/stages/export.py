"""The export stage: ``data/audited`` -> ``<paths.export>/<export.name>/``.

Folder layout (always; ``shared/tools/check_contracts.py export DIR`` checks it)::

    <name>-000000.tar ...   WebDataset shards (see synthgen.export.shard_writer)
    index.json              shard sha256/bytes/samples/classes, totals (see synthgen.export.index)
    README.md               dataset card (see synthgen.export.card)
    dicom/<key>.dcm         only with export.format=dicom (see synthgen.data.dicom_writer)
    nifti/<key>.nii.gz      only with export.format=nifti (see synthgen.export.nifti; volumes:
                            synthgen.export.volume, the same bytes as the shards' nii.gz member)

The shards are written in every format, so consumers and checks see one layout; DICOM/NIfTI are extra
copies of the same samples for imaging tools. The whole folder is built in a temp sibling and renamed into
place (``synthgen.io.atomic_path``): a killed export leaves the previous export intact (or none).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, InputError
from ..io import atomic_path, dumps_json, sha256_file
from ..export.audited import AuditedCohort, load_audited
from ..export.card import load_optional_json, render_card
from ..export.encode import KEY_PATTERN, sample_key
from ..export.index import INDEX_NAME, build_index
from ..export.shard_writer import sample_order, write_shards
from ..export.volume import volume_nifti_bytes

log = logging.getLogger(__name__)
FORMATS = ("webdataset", "dicom", "nifti")


def parse_formats(value: Any) -> list[str]:
    """``export.format`` (a name, ``a+b``, or a list) -> ``["webdataset", ...]`` in canonical order."""
    items = list(value) if isinstance(value, (list, tuple)) or OmegaConf.is_list(value) else str(value).split("+")
    items = [str(i).strip().lower() for i in items if str(i).strip()]
    bad = [i for i in items if i not in FORMATS]
    if bad or not items:
        raise ConfigError("export.format", f"{value!r}: expected one of {', '.join(FORMATS)} (or a list of them)")
    return [f for f in FORMATS if f == "webdataset" or f in items]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out: Path) -> None:
    """Remove temp siblings left by killed exports (``atomic_path``'s ``.<name>.tmp-<pid>``/``.old-<pid>``).

    A kill between atomic_path's two renames leaves the previous export only as ``.old-<pid>``: it is moved
    back into place first, so the previous export reappears intact.
    """
    for kind in ("old", "tmp"):
        for p in sorted(out.parent.glob(f".{out.name}.{kind}-*")):
            pid = p.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if kind == "old" and not out.exists():
                os.replace(p, out)
                log.warning("restored the previous export %s from %s", out, p)
            elif p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def volume_spacing(cohort: AuditedCohort, prepared_meta: dict[str, Any] | None, prepared: Path) -> list[float] | None:
    """``[sz, sy, sx]`` mm of a volume cohort (the cohort's own ``spacing``, else ``meta.json``'s); None for 2D."""
    if cohort.images.ndim != 5:
        return None
    spacing = cohort.meta.get("spacing") or (prepared_meta or {}).get("spacing")
    if not (isinstance(spacing, list) and len(spacing) == 3 and all(float(s) > 0 for s in spacing)):
        raise InputError(prepared / "meta.json", "a volume cohort needs spacing [sz, sy, sx] mm (written by "
                                                 "the prepare stage with data.dims=3) to export NIfTI")
    return [float(s) for s in spacing]


def write_medical(cohort: AuditedCohort, out_dir: Path, name: str, formats: Sequence[str],
                  order, spacing: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """DICOM and/or NIfTI copy of every sample, in export order; returns index ``files`` entries
    (``spacing``: volumes, see :mod:`synthgen.export.volume`)."""
    files: list[dict[str, Any]] = []
    names = cohort.class_names
    for fmt in formats:
        if fmt == "dicom":
            from ..data.dicom_writer import sample_dataset, save
        elif fmt == "nifti":
            from ..export.nifti import write_nifti
        else:
            continue
        for pos, i in enumerate(order):
            label = int(cohort.labels[i])
            key = sample_key(name, names[label], int(cohort.index[i]))
            if fmt == "dicom":
                rel = f"dicom/{key}.dcm"
                save(out_dir / rel, sample_dataset(
                    cohort.images[i], key, names[label], pos + 1, name=name, config_hash=cohort.config_hash,
                    generator=cohort.generator, version=cohort.synthgen_version))
            elif spacing is not None:
                rel = f"nifti/{key}.nii.gz"
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (out_dir / rel).write_bytes(volume_nifti_bytes(cohort.images[i], spacing))
            else:
                rel = f"nifti/{key}.nii.gz"
                write_nifti(out_dir / rel, cohort.images[i])
            files.append({"path": rel, "sha256": sha256_file(out_dir / rel), "bytes": (out_dir / rel).stat().st_size})
    return files


def export(cfg: DictConfig, out_dir: str | os.PathLike | None = None) -> Path:
    """Run the export stage for a composed config; returns the export folder."""
    ecfg = cfg.export
    name = str(ecfg.name)
    if not KEY_PATTERN.match(name):
        raise ConfigError("export.name", f"{name!r} must match [A-Za-z0-9_-]+ (it starts every sample key)")
    formats = parse_formats(ecfg.format)
    max_samples = int(ecfg.shard_size.samples)
    if max_samples < 1:
        raise ConfigError("export.shard_size.samples", f"{max_samples} must be >= 1")
    max_bytes = ecfg.shard_size.get("bytes")
    cohort = load_audited(cfg.paths.audited, require_pass=bool(ecfg.get("require_privacy_pass", True)))
    prepared_meta = load_optional_json(Path(cfg.paths.prepared) / "meta.json")
    spacing = volume_spacing(cohort, prepared_meta, Path(cfg.paths.prepared))
    if spacing is not None and "dicom" in formats:
        raise ConfigError("export.format", "DICOM export is 2D only: volumes are exported as NIfTI (in every "
                                           "shard, and as nifti/ copies with export.format=nifti)")
    shuffle, seed = bool(ecfg.shuffle), int(ecfg.seed)
    out = Path(out_dir) if out_dir is not None else Path(cfg.paths.export) / name
    metrics = Path(cfg.paths.metrics)
    clean_stale(out)
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        shards = write_shards(cohort, tmp, name, max_samples, None if max_bytes is None else float(max_bytes),
                              shuffle=shuffle, seed=seed, png_level=int(ecfg.get("png_level", 1)), spacing=spacing)
        files = write_medical(cohort, tmp, name, formats, sample_order(cohort, shuffle, seed), spacing)
        index = build_index(cohort, name, formats, shards, files, spacing)
        (tmp / INDEX_NAME).write_text(dumps_json(index), encoding="utf-8")
        card = render_card(cohort, index, OmegaConf.to_container(ecfg, resolve=True),
                           prepared_meta=prepared_meta,
                           evaluate=load_optional_json(metrics / "evaluate.json"),
                           privacy=load_optional_json(metrics / "privacy.json"),
                           train=load_optional_json(metrics / "train.json"))
        (tmp / "README.md").write_text(card, encoding="utf-8")
    log.info("exported %d samples in %d shards to %s", index["totals"]["samples"], len(shards), out)
    return out
