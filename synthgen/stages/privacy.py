"""The pipeline's ``privacy`` stage: audit ``data/curated`` (the curate stage's output, issue 14 order
generate -> curate -> privacy -> evaluate -> export) against ``data/prepared`` train + holdout, with
real unseen reference images (the split named by ``privacy_reference_split`` in ``meta.json``) as the null.

The reference split is written by the prepare stage: ``val`` for sources with patient ids (a patient-level
split of the training distribution), ``test`` for sources without them (an official, scan-disjoint split);
``val`` when the key is absent. It must be one of ``val``/``test`` and share no patient with the holdout.
When it is missing or empty the stage falls back to a seeded half of the holdout's patients (a warning, and
``reference.origin: holdout half`` in the report).

Writes (all atomically):

* ``data/audited/cohort.npz``: the kept samples -- every per-sample key of the curated cohort (so the
  ``curate_<score>`` arrays reach export), ``index`` ``(N,)`` int64 (row in the generated cohort: the curated
  cohort's own ``index`` carried through) and ``privacy_<score>`` ``(N,)`` float32 scores;
* ``data/audited/cohort.json``: the curated ``cohort.json`` (generated + ``curation``) plus a ``privacy`` summary;
* ``reports/privacy_report.json`` (every flag, thresholds and their calibration), ``metrics/privacy.json``
  (``dvc metrics``), ``reports/privacy_nearest_pairs.png`` (``dvc plots``).

Membership inference is distance-based for every generator and, when the cohort's generator is a diffusion
model, also denoising-error based (the checkpoint recorded in ``cohort.json``, :mod:`.loss_mia`), gated with
the same limits; for a GAN the loss attack is reported as not applicable.

A failing cohort-level gate fails the stage (exit 1, one line naming the gates) and leaves no audited cohort,
so export cannot run on it; the report, metrics and PNG are still written for the person who must look.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from omegaconf import OmegaConf

from ..config import load_config
from ..data.prepared import load_split
from ..errors import InputError, StageFailed
from ..io import atomic_path, save_npz, write_json
from ..privacy.inputs import ImageSet, to_float01, to_nchw

log = logging.getLogger(__name__)

SCORE_KEYS = ("pearson", "ssim", "embedding", "ratio")


class GateFailed(StageFailed):
    """A cohort-level privacy gate failed (the model, not just some samples)."""


def _stored_ndim(path: Path) -> int:
    """Number of axes of ``images`` in the ``.npz`` at ``path``, from the array header (nothing loaded)."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open("images.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            return len(read(f)[0])
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return -1                                    # load_split names the problem


def _prepared_set(prepared: Path, split: str) -> ImageSet:
    """One prepared split; volumes ``(N, C, D, H, W)`` (``data.dims=3``) are read as stored, images through
    :func:`~synthgen.data.prepared.load_split`."""
    path = prepared / f"{split}.npz"
    if path.exists() and _stored_ndim(path) == 5:
        with np.load(path, allow_pickle=False) as z:
            x = z["images"]
            return ImageSet(to_float01(x, path), z["labels"].reshape(-1).astype(np.int64),
                            np.asarray(z["patient_ids"], dtype=str), str(x.dtype), str(path))
    c = load_split(prepared, split, as_float=True)
    return ImageSet(c.images, c.labels, c.patient_ids, c.storage_dtype, str(path))


def _read_meta(path: Path) -> dict:
    """``meta.json`` as a dict; ``{}`` when absent (load_split then names the missing file)."""
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise InputError(path, f"expected a JSON object, got {type(meta).__name__}")
    return meta


def _generated(generated: Path) -> tuple[dict[str, np.ndarray], dict, ImageSet]:
    npz, meta_p = generated / "cohort.npz", generated / "cohort.json"
    for p in (npz, meta_p):
        if not p.exists():
            raise InputError(p, "missing: run the curate stage first (dvc repro curate)")
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise InputError(npz, f"not a readable .npz archive: {e}") from None
    if "images" not in arrays or "labels" not in arrays:
        raise InputError(npz, f"needs 'images' and 'labels', has {sorted(arrays)}")
    n = len(arrays["images"])
    images = to_float01(to_nchw(arrays["images"], npz), npz)
    s = ImageSet(images, np.asarray(arrays["labels"]).reshape(-1).astype(np.int64),
                 np.array([f"synthetic#{i}" for i in range(n)]), str(arrays["images"].dtype), str(npz))
    return arrays, json.loads(meta_p.read_text()), s


REFERENCE_KEY = "privacy_reference_split"


def reference_split(meta_prep: dict, meta_path: Path) -> str:
    """The prepared split that serves as the privacy reference (``meta.json`` key, default ``val``)."""
    name = meta_prep.get(REFERENCE_KEY, "val") if isinstance(meta_prep, dict) else "val"
    if name not in ("val", "test"):
        raise InputError(meta_path, f"{REFERENCE_KEY} is {name!r}; expected 'val' or 'test' (a split of real "
                                    "images never used for training, disjoint from the holdout)")
    return str(name)


def _reference_set(prepared: Path, meta_prep: dict) -> tuple[ImageSet | None, str]:
    """The reference split and its origin for the report, or ``(None, ...)``: use half of the holdout."""
    name = reference_split(meta_prep, prepared / "meta.json")
    if not (prepared / f"{name}.npz").exists():
        log.warning("reference split %s.npz not found in %s: falling back to half of the holdout", name, prepared)
        return None, "holdout half"
    ref = _prepared_set(prepared, name)
    if len(ref) == 0:
        log.warning("reference split %s is empty: falling back to half of the holdout", name)
        return None, "holdout half"
    return ref, f"prepared split {name}"


def _nonmember_set(prepared: Path, reference: ImageSet | None, reference_name: str) -> ImageSet | None:
    """Non-members for the membership attacks: the ``val`` split when the reference is another split.

    The attacks need real unseen images *from the training distribution*; they never look at the holdout,
    so val serves even where it shares scans with the holdout (sources without patient ids, whose reference
    is the official test split: it may come from other scanners, and a shifted non-member set inflates the
    attacks' AUC for reasons that have nothing to do with the model). ``None``: use the reference.
    """
    if reference is None or reference_name == "val" or not (prepared / "val.npz").exists():
        return None
    val = _prepared_set(prepared, "val")
    return val if len(val) else None


def run_stage(cfg) -> dict:
    """Run the stage for a composed config; returns the report. Raises :class:`GateFailed` on a failed gate."""
    from ..privacy.audit import run_audit
    from ..privacy.loss_mia import loss_error_fn
    from ..privacy.report import build_report, metrics_summary, nearest_pairs_png, write_report

    pcfg = OmegaConf.to_container(cfg.privacy, resolve=True)
    paths = cfg.paths
    prepared = Path(paths.prepared)
    meta_prep = _read_meta(prepared / "meta.json")
    train, holdout = _prepared_set(prepared, "train"), _prepared_set(prepared, "holdout")
    reference, origin = _reference_set(prepared, meta_prep)
    nonmembers = _nonmember_set(prepared, reference, reference_split(meta_prep, prepared / "meta.json"))
    arrays, gen_meta, synthetic = _generated(Path(paths.curated))
    error_fn, loss_info = loss_error_fn(gen_meta, pcfg.get("mia_loss") or {}, int(pcfg.get("seed", 0)),
                                        Path(paths.curated) / "cohort.json")
    result = run_audit(train, holdout, synthetic, pcfg, error_fn=error_fn, loss_info=loss_info,
                       reference=reference, reference_origin=origin, nonmembers=nonmembers)
    class_names = gen_meta.get("class_names") or meta_prep.get("class_names")
    report = build_report(result, train, holdout, synthetic, class_names, timings=False)
    log.info("privacy audit timings (s): %s", {k: round(v, 1) for k, v in result.timings.items()})
    reports, metrics = Path(paths.reports), Path(paths.metrics)
    write_report(reports / "privacy_report.json", report)
    write_json(metrics / "privacy.json", metrics_summary(report))
    nearest_pairs_png(reports / "privacy_nearest_pairs.png", result, train, synthetic,
                      int(pcfg.get("report", {}).get("top_pairs", 16)))
    audited = Path(paths.audited)
    if not result.passed:
        if audited.exists():  # never leave an older audited cohort for export to pick up
            shutil.rmtree(audited)
        raise GateFailed(f"privacy gate failed: {report['failed_gates']} "
                         f"({report['cohort']['n_flagged']} of {len(synthetic)} samples flagged); "
                         f"see {reports / 'privacy_report.json'}")
    kept = np.flatnonzero(~result.flags)
    n = len(synthetic)
    out = {k: v[kept] for k, v in arrays.items() if v.ndim >= 1 and len(v) == n}
    # a row of the generated cohort: the curated cohort's index where it has one (it always does in the pipeline)
    out["index"] = (arrays["index"][kept] if "index" in arrays and len(arrays["index"]) == n else kept).astype(np.int64)
    for k in SCORE_KEYS:
        out[f"privacy_{k}"] = result.scores[k][kept].astype(np.float32)
    summary = {"passed": True, "n_generated": n, "n_kept": int(len(kept)), "n_flagged": int(result.flags.sum()),
               "flagged_by_rule": report["cohort"]["first_rule"],
               "thresholds": {k: v["overall"] for k, v in report["thresholds"].items()},
               "gates": report["gates"], "report": str(reports / "privacy_report.json")}
    with atomic_path(audited) as tmp:
        tmp.mkdir(parents=True)
        save_npz(tmp / "cohort.npz", **out)
        write_json(tmp / "cohort.json", {**gen_meta, "privacy": summary})
    log.info("privacy: kept %d of %d samples -> %s", len(kept), n, audited)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pipelines/privacy.py``: 0 pass, 1 gate failed, 2 bad input."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        report = run_stage(load_config(argv))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except GateFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"privacy gate passed: kept {report['cohort']['n_kept']} of {report['cohort']['n_synthetic']}")
    return 0
