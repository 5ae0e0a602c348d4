"""The dataset card ``README.md`` written next to the shards (Hugging Face dataset-card format).

YAML front matter (license, task_categories, tags, size_categories, ``configs``/``data_files`` pointing at
the shards) followed by: contents and per-class counts, a 5-line plain-``webdataset`` reading snippet,
provenance (source cohort summary, its splits and near-duplicates across them, model, training budget,
full config), evaluation metrics, curation per class and the rare-class boost plan (when the curate stage ran them), the privacy
report, and intended use and limitations.

No PHI: from the source cohort only aggregate, allow-listed fields of ``data/prepared/meta.json`` are shown
(counts, image size, channels, dtype, modality, source kind, split policy, near-duplicate counts), and in
the configs and metrics every value whose key names a file system location (``path``, ``root``, ``*_path``,
``*_dir``, ...) and every absolute path (a folder name can carry a patient or site name) is replaced by
``<local path>``.
The text depends only on what was trained and generated, never on how the runs went: no timestamps, and
from the metrics files nothing run-dependent. From ``metrics/train.json`` only the training outcome is shown
(:data:`TRAIN_RESULT_KEYS`: parameters, global step, epochs, batches); its timings and resume bookkeeping
(``fit_seconds``, ``train_images_per_s``, ``resumed_from_step``, ``batches_this_run``, epoch-mean losses
that depend on where a run was resumed) stay in ``metrics/``. From the other metrics files, keys that name a
duration, a rate per second or a time stamp (:func:`is_run_dependent_key`) are left out. So two exports of
the same cohort are byte-identical even when the trainings took different times or one was resumed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from ..errors import InputError
from .audited import AuditedCohort

_PATH_KEYS = ("path", "paths", "root", "dir", "file", "url", "cache")
_SOURCE_KEYS = ("kind", "name", "modality", "flavour")
_BUDGET_KEYS = ("max_epochs", "max_steps", "max_time", "epochs", "steps", "batch_size", "max_batches",
                "limit_train_batches", "precision", "accelerator", "devices")
_TRAINING_GROUPS = ("model", "trainer", "train")
#: the keys of ``metrics/train.json`` that describe the trained model (the rest is timing/bookkeeping).
TRAIN_RESULT_KEYS = ("model", "target", "parameters", "global_step", "epochs", "batches", "budget.name")
_RUN_DEPENDENT = re.compile(r"(^|_)(seconds|secs|elapsed|duration|wall|timings?|timestamp|hostname)(_|$)|_s$|_per_s$")


def is_run_dependent_key(key: str) -> bool:
    """True for a dotted metrics key one of whose parts names wall time, a rate per second or a time stamp
    (``fit_seconds``, ``timings_s.total``, ``images_per_s``): such values differ between identical runs."""
    return any(_RUN_DEPENDENT.search(part.lower()) for part in str(key).split("."))


def run_independent(metrics: Mapping[str, Any] | None) -> dict[str, Any]:
    """Flattened scalars of a metrics file without its run-dependent keys (paths redacted)."""
    return {k: v for k, v in flatten_scalars(redact_paths(metrics or {})).items() if not is_run_dependent_key(k)}


def _is_path_key(key: str) -> bool:
    k = str(key).lower()
    return any(k == p or k.endswith("_" + p) or k.startswith(p + "_") for p in _PATH_KEYS)


def _is_absolute_path(v: Any) -> bool:
    """``/x``, ``~/x``, ``C:\\x`` or ``C:/x``: a location on the machine that wrote it."""
    return isinstance(v, str) and (v.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", v) is not None)


def redact_paths(obj: Any) -> Any:
    """Copy of a config or metrics tree with file system locations (values of path-like keys, and any
    absolute path) replaced by ``"<local path>"``."""
    if isinstance(obj, Mapping):
        return {k: ("<local path>" if _is_path_key(k) and v not in (None, "") and not isinstance(v, (int, float))
                    else redact_paths(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_paths(v) for v in obj]
    return "<local path>" if _is_absolute_path(obj) else obj


def flatten_scalars(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": 1.0, ...}`` for every number/bool/short string leaf of a JSON tree (lists skipped)."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            out.update(flatten_scalars(obj[k], f"{prefix}{k}."))
    elif isinstance(obj, (bool, int, float)) or (isinstance(obj, str) and len(obj) <= 80):
        out[prefix[:-1]] = obj
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def shard_brace_pattern(name: str, n_shards: int) -> str:
    """``<name>-{000000..000003}.tar`` (or the single file name)."""
    return f"{name}-000000.tar" if n_shards == 1 else f"{name}-{{000000..{n_shards - 1:06d}}}.tar"


def reading_snippet(name: str, n_shards: int, volume: bool = False) -> str:
    """Five lines that read the shards with plain ``webdataset`` + numpy (no synthgen), run from the folder
    (``volume``: seven, with the NIfTI member read by nibabel)."""
    lines = [
        "import io, json, numpy as np, webdataset as wds",
        f'ds = wds.WebDataset("{shard_brace_pattern(name, n_shards)}", shardshuffle=False)',
        "for s in ds:",
        '    x = np.load(io.BytesIO(s["npy"]))  # (C, H, W) uint8|uint16, exact intensities',
        '    y, meta = int(s["cls"]), json.loads(s["json"])  # label, provenance + privacy scores',
    ]
    if volume:
        lines[0] = "import gzip, io, json, nibabel as nib, numpy as np, webdataset as wds"
        lines[3] = '    x = np.load(io.BytesIO(s["npy"]))  # (C, D, H, W) uint8|uint16, exact intensities'
        lines.append('    img = nib.Nifti1Image.from_bytes(gzip.decompress(s["nii.gz"]))  # same voxels, RAS affine')
    return "\n".join(lines)


def front_matter(name: str, index: Mapping[str, Any], license: str, pretty_name: str) -> str:
    fm = {
        "license": license,
        "pretty_name": pretty_name,
        "task_categories": ["image-classification"],
        "tags": ["synthetic", "medical", "webdataset", "synthgen"],
        "size_categories": [_size_category(int(index["totals"]["samples"]))],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": f"{name}-*.tar"}]}],
    }
    return "---\n" + yaml.safe_dump(fm, sort_keys=False, default_flow_style=False) + "---\n"


def splits_section(prepared_meta: Mapping[str, Any]) -> list[str]:
    """The "Splits" subsection: patient ids yes/no, the split policy and the near-duplicate shares across
    splits (from ``data/prepared/meta.json``; empty for a meta.json written before these keys existed)."""
    if "patient_ids" not in prepared_meta:
        return []
    ids = "yes" if prepared_meta["patient_ids"] else "no (each image counts as its own patient)"
    out = ["### Splits\n", f"Patient ids in the source: {ids}. {prepared_meta.get('split_policy', '')}\n"]
    dups = prepared_meta.get("near_duplicates") or {}
    if dups.get("pairs"):
        out.append(f"Near-duplicates across splits: share of the second split's images whose nearest image in the "
                   f"first split has pixel Pearson correlation >= {_fmt(float(dups['threshold_pearson']))} (compare "
                   "the rows: where unrelated images look alike, even disjoint splits reach high shares):\n")
        order = ("train-val", "train-test", "train-holdout", "val-test", "val-holdout", "test-holdout")
        names = sorted(dups["pairs"], key=lambda k: (order.index(k) if k in order else len(order), k))
        out.append(_table(("splits", "images", "near-copies", "share", "median nearest r"),
                          [(k, r["n"], r["near_copies"], "-" if r["share"] is None else f"{100 * r['share']:.2f}%",
                            "-" if r["median_nn_pearson"] is None else r["median_nn_pearson"])
                           for k, r in ((k, dups["pairs"][k]) for k in names)]) + "\n")
    return out


def curation_section(cohort_meta: Mapping[str, Any]) -> list[str]:
    """The "Curation" section: per class how many samples were generated, kept by the curate stage's filter and
    shipped, and why the others were dropped (``curation`` in ``cohort.json``); a class that ships nothing is
    named in a warning line. Empty when the cohort did not pass the curate stage."""
    cur = (cohort_meta or {}).get("curation") or {}
    per_class = cur.get("per_class")
    if not isinstance(per_class, Mapping) or not per_class:
        return []
    th = cur.get("thresholds") or {}
    out = ["## Curation\n",
           "The curate stage scored every generated sample with a classifier trained on the real training split "
           "only and dropped those unlikely to be of their class (`confidence`), outside the real class's "
           "feature-space neighbourhood (`realism`) or near-duplicates of another kept sample (`near_duplicate`)"
           + (f"; thresholds: {', '.join(f'{k} {_fmt(v)}' for k, v in th.items())}" if th else "") + ".\n"]
    reasons = sorted({r for v in per_class.values() for r in (v.get("dropped") or {})})
    rows = [(c, v.get("in", 0), v.get("kept", 0), v.get("shipped", 0),
             *[(v.get("dropped") or {}).get(r, 0) for r in reasons]) for c, v in per_class.items()]
    out.append(_table(("class", "generated", "kept", "shipped", *[f"dropped: {r}" for r in reasons]), rows) + "\n")
    none = [c for c, v in per_class.items() if v.get("in") and not v.get("shipped")]
    if none:
        out.append(f"**No synthetic images of {', '.join(none)}**: the generator's samples of "
                   f"{'this class' if len(none) == 1 else 'these classes'} did not pass the filter (the model did not "
                   "learn them well enough: train longer, e.g. `budget=standard`, and look at `reports/samples.png`).\n")
    return out


def boost_section(cohort_meta: Mapping[str, Any]) -> list[str]:
    """The "Rare-class boost plan" section: one statement per boosted class, from the plan summary the curate
    stage records in ``cohort.json`` (``curation.plan``: :meth:`synthgen.curation.plan.BoostPlan.summary`, or
    just its list of lines); empty when no plan ran."""
    plan = ((cohort_meta or {}).get("curation") or {}).get("plan")
    if isinstance(plan, list):
        plan = {"lines": plan}
    if not isinstance(plan, Mapping) or not plan.get("lines"):
        return []
    how = ""
    if plan.get("seeds"):
        how = (f": oversampling the real images against oversampling + synthetic images, {len(plan['seeds'])} "
               f"classifier seeds, paired t-intervals. Rule: {plan.get('rule', '')}")
    source = ((cohort_meta or {}).get("curation") or {}).get("plan_validation")
    where = ("the real validation split" if source in (None, "prepared val split") else
             f"real validation images from `{Path(str(source)).name}` (`curate.plan.validation`)")
    out = ["## Rare-class boost plan\n",
           f"The synthetic images of the boosted classes were chosen on {where} (never the test split){how}.\n"]
    out += [f"- {_fmt(str(line))}" for line in plan["lines"]]
    out.append("\nEvery setting tried, with its interval, is in `metrics/boost.json`; the evaluation above "
               "measures the exported cohort on the test split.\n")
    return out


def rare_test_lines(evaluate: Mapping[str, Any] | None) -> list[str]:
    """One paragraph on the rare classes' test-split result of the exported cohort (``rare`` of
    ``metrics/evaluate.json``: oversampling alone against oversampling + the rare classes' shipped synthetic
    images, paired by classifier seed); empty without a ``rare`` section or without both arms."""
    rare = (evaluate or {}).get("rare") or {}
    over, plan = rare.get("oversampling"), rare.get("boost_plan")
    if not isinstance(over, Mapping) or not isinstance(plan, Mapping):
        return []
    n = (rare.get("synthetic_images") or {}).get("boost_plan")
    paired = rare.get("boost_plan_paired") or {}

    def gain(metric: str) -> str:
        p = paired.get(metric)
        if not isinstance(p, Mapping):
            return f"{plan[metric] - over[metric]:+.3f}"
        return f"gain {p['mean']:+.3f}, 95% CI [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}]"

    classes = [str(c) for c in rare.get("classes", [])]
    of = "this class" if len(classes) == 1 else "these classes"
    what = f"adding the {n} shipped synthetic images of {of}" if n else \
        f"no synthetic image of {of} ships, so the second figure is the first"
    return [f"**Rare class{'es' if len(classes) > 1 else ''} {', '.join(classes)} on the real test split** "
            f"(`rare` in `metrics/evaluate.json`, {(evaluate or {}).get('seeds', '?')} classifier seeds, paired by "
            f"seed): recall with oversampling alone {over['rare_recall']:.3f}, {what}: {plan['rare_recall']:.3f} "
            f"({gain('rare_recall')}); balanced accuracy {over['balanced_accuracy']:.3f} -> "
            f"{plan['balanced_accuracy']:.3f} ({gain('balanced_accuracy')}).\n"]


def volume_section(sample: Mapping[str, Any]) -> str:
    """What a consumer of a 3D export must know: dims, shape, spacing and the axis/affine convention."""
    c, d, h, w = sample["shape"]
    sz, sy, sx = sample["spacing"]
    return (f"Volumes: dims 3, each sample `(C, D, H, W)` = `({c}, {d}, {h}, {w})` voxels, spacing "
            f"`[sz, sy, sx]` = `[{sz:g}, {sy:g}, {sx:g}]` mm. Axes: D runs inferior -> superior (axial slice "
            "index), H posterior -> anterior, W the patient's left -> right (canonical RAS, transposed). In "
            "`<key>.nii.gz` the voxel array is `(W, H, D)` with affine `diag(sx, sy, sz)` (volume centered at "
            "the origin), so `np.asarray(nib.load(f).dataobj).transpose(2, 1, 0)` is the `(D, H, W)` volume and "
            "viewers show it in the right orientation.\n")


def render_card(cohort: AuditedCohort, index: Mapping[str, Any], export_cfg: Mapping[str, Any],
                prepared_meta: Mapping[str, Any] | None = None, evaluate: Mapping[str, Any] | None = None,
                privacy: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None) -> str:
    """The card text. ``prepared_meta``/``evaluate``/``privacy``/``train`` are the optional JSON files
    ``data/prepared/meta.json`` and ``metrics/{evaluate,privacy,train}.json``."""
    name = index["name"]
    totals = index["totals"]
    n_shards = int(totals["shards"])
    names = list(index["class_names"])
    shape, dtype = index["sample"]["shape"], index["sample"]["dtype"]
    source = dict((prepared_meta or {}).get("source", {}) or {})
    modality = source.get("modality") or "medical"
    pretty = f"{name}: synthetic {modality} images ({cohort.generator or 'synthgen'})"
    out = [front_matter(name, index, str(export_cfg.get("license", "other")), pretty)]
    out.append(f"# {pretty}\n")
    out.append("> **Synthetic data, not for diagnosis.** Every image in this dataset was generated by a model; "
               "none shows a real patient. Each sample's `json` says `\"synthetic\": true`.\n")

    out.append("## Contents\n")
    out.append(f"{totals['samples']} samples of shape `{shape}` (`{dtype}`) in {n_shards} WebDataset shard(s) "
               f"`{shard_brace_pattern(name, n_shards)}` ({totals['bytes']} bytes in all). `index.json` lists "
               "every shard's sha256, size, sample count and per-class counts; `synthgen verify <this folder>` "
               "checks them.\n")
    volume = index["sample"].get("dims") == 3
    axes = "(C, D, H, W)" if volume else "(C, H, W)"
    members = [
        ("`<key>.npy`", f"intensities `{axes}` `{dtype}`, exactly as generated (float = value / dtype max)"),
        ("`<key>.png`", "8-bit preview (uint16 scaled linearly, no windowing)" + (
            "; the central axial, coronal and sagittal slices side by side, radiological display" if volume else "")),
        ("`<key>.cls`", "integer label (index into the class list below)"),
        ("`<key>.json`", "class name, `synthetic: true`, generator, synthgen version, checkpoint sha256, "
                         "config hash, seed, privacy scores"),
    ]
    if volume:
        members.insert(1, ("`<key>.nii.gz`", "the same voxels as NIfTI-1 with spacing and RAS affine"))
    out.append(_table(("member", "content"), members) + "\n")
    if volume:
        out.append(volume_section(index["sample"]))
    out.append("Keys are `<name>-<class>-<row:07d>` (no dots).\n")
    out.append("### Per-class counts\n")
    out.append(_table(("label", "class", "samples"),
                      [(i, c, totals["classes"].get(c, 0)) for i, c in enumerate(names)]) + "\n")
    formats = [f for f in index.get("formats", []) if f != "webdataset"]
    if "dicom" in formats:
        out.append("DICOM copies: `dicom/<key>.dcm`, Secondary Capture, Synthetic Data (0008,001C) = YES, Image "
                   "Type DERIVED\\SECONDARY, generator recorded in Contributing Equipment Sequence "
                   "(109100, DCM, \"Synthesizing Equipment\"); no attribute comes from a source header.\n")
    if "nifti" in formats and volume:
        out.append("NIfTI copies: `nifti/<key>.nii.gz`, the same bytes as each sample's `nii.gz` member.\n")
    elif "nifti" in formats:
        out.append("NIfTI copies: `nifti/<key>.nii.gz`, voxel array `(W, H, 1)` (or `(W, H, 1, 1, C)` vector "
                   "intent for C > 1), identity affine; `np.asarray(nib.load(f).dataobj)[:, :, 0].T` is the "
                   "`(H, W)` image.\n")

    out.append("## Reading the shards\n")
    out.append("With plain `webdataset` (no synthgen needed), from this folder:\n")
    out.append("```python\n" + reading_snippet(name, n_shards, volume) + "\n```\n")
    out.append("For training, `synthgen.shards.synthetic_pipeline(urls, batch_size=..., real_urls=..., "
               "real_fraction=...)` decodes to float tensors in [0, 1], shuffles, splits shards over DDP "
               "ranks and workers, and can mix in real data. URLs may be local paths, brace patterns, "
               "`pipe:` commands, `http(s)://` or `s3://` objects.\n")

    out.append("## Provenance\n")
    out.append("### Source cohort (aggregate only, no PHI)\n")
    if prepared_meta:
        facts = [(f"source {k}", source[k]) for k in _SOURCE_KEYS if source.get(k) not in (None, "")]
        facts += [(k.replace("_", " "), prepared_meta[k]) for k in ("image_size", "channels", "dtype", "dims",
                                                                  "volume_shape", "spacing")
                  if k in prepared_meta]
        if prepared_meta.get("normalization"):
            facts.append(("normalization", prepared_meta["normalization"]))
        out.append(_table(("field", "value"), facts) + "\n")
        counts = prepared_meta.get("counts") or {}
        if counts:
            splits = list(counts)
            out.append("Real images per split and class (the model trained on `train` only):\n")
            out.append(_table(("class",) + tuple(splits),
                              [(c,) + tuple(counts[s].get(c, 0) for s in splits) for c in names]) + "\n")
        rare = prepared_meta.get("rare") or {}
        if rare.get("classes"):
            out.append(f"Rare-class scenario: classes {rare['classes']} kept at {rare.get('keep')} training "
                       "images each.\n")
        out.extend(splits_section(prepared_meta))
    else:
        out.append("No `data/prepared/meta.json` was available when this card was written.\n")
    out.append("### Model\n")
    out.append(_table(("field", "value"), [
        ("generator", cohort.generator), ("model target", cohort.model_target),
        ("checkpoint sha256", cohort.checkpoint_sha256), ("config hash", cohort.config_hash),
        ("synthgen version", cohort.synthgen_version)]) + "\n")
    cfg = redact_paths(cohort.config)
    # Only training settings (generate.* batch sizes and sampler steps are in the full configuration below);
    # the generate stage records the model config, so the budget actually spent comes from metrics/train.json.
    budget = [(k, v) for k, v in flatten_scalars(cfg).items()
              if k.split(".")[0] in _TRAINING_GROUPS and k.split(".")[-1] in _BUDGET_KEYS]
    budget += [(f"train metric {k}", v) for k, v in run_independent(train).items()
               if k in TRAIN_RESULT_KEYS]
    out.append("Training budget:\n")
    out.append((_table(("setting", "value"), budget) if budget else "not recorded") + "\n")
    budget_warning = ((train or {}).get("budget") or {}).get("warning")
    if budget_warning:  # a smoke-test budget on a real cohort (synthgen/budget.py)
        out.append(f"**Budget warning:** {budget_warning}\n")
    out.append("### Full configuration\n")
    out.append("Generator run (from the audited `cohort.json`; local paths redacted):\n")
    out.append("```yaml\n" + yaml.safe_dump(cfg, sort_keys=True, default_flow_style=False).rstrip() + "\n```\n")
    out.append("Export:\n")
    out.append("```yaml\n" + yaml.safe_dump(redact_paths(dict(export_cfg)), sort_keys=True).rstrip() + "\n```\n")

    out.append("## Evaluation\n")
    ev = run_independent(evaluate)
    if ev:
        out.append("Measured on the exported samples (the pipeline evaluates the audited cohort, after curation and "
                   "the privacy gate; `metrics/evaluate.json`):\n")
    out.append((_table(("metric", "value"), list(ev.items())) if ev else
                "No evaluation metrics (`metrics/evaluate.json`) were available.") + "\n")
    out.extend(rare_test_lines(evaluate))

    out.extend(curation_section(cohort.meta))
    out.extend(boost_section(cohort.meta))

    out.append("## Privacy report\n")
    summary = run_independent(cohort.privacy_summary)
    summary.update({f"metrics.{k}": v for k, v in run_independent(privacy).items()})
    out.append("Only samples the privacy gate kept are exported (gate summary from `cohort.json`, details "
               "from `metrics/privacy.json`):\n")
    out.append(_table(("field", "value"), list(summary.items())) + "\n")
    if cohort.privacy or cohort.curation:
        rows = []
        scores = sorted(cohort.privacy.items()) + [(f"curation {k}", v) for k, v in sorted(cohort.curation.items())]
        for s, v in scores:
            v = v[np.isfinite(v)]
            rows.append((s,) + ((float(v.min()), float(np.median(v)), float(v.max())) if len(v) else ("-",) * 3))
        out.append("Per-sample scores of the exported samples (also in each sample's `json`):\n")
        out.append(_table(("score", "min", "median", "max"), rows) + "\n")

    out.append("## Intended use and limitations\n")
    out.append("- Intended for: training, augmenting and benchmarking machine-learning models (e.g. "
               "balancing rare classes), teaching, and sharing data where the real images cannot be shared.\n"
               "- **Not for diagnosis, clinical decisions or as evidence about any patient.** The images are "
               "model samples: they can contain artefacts, implausible anatomy, or label errors, and they "
               "reproduce the biases (scanners, sites, demographics, class balance) of the small source "
               "cohort.\n"
               "- Models trained only on synthetic data should be validated on real, held-out data before use.\n"
               "- The privacy gate lowers, but cannot exclude, the risk that a sample resembles a training "
               "image; see the privacy report above. Source-data terms still apply to derived data.\n")
    return "\n".join(out)


def load_optional_json(path: str | os.PathLike) -> dict[str, Any] | None:
    """Parsed JSON object at ``path``, or None if the file is absent (InputError if it is not JSON)."""
    p = Path(path)
    if not p.exists():
        return None
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(p, f"not valid JSON ({e})") from e
    return obj if isinstance(obj, dict) else {"value": obj}
