"""The generate stage: ``models/generator.ckpt`` + the plan -> ``data/generated/cohort.{npz,json}`` and
``reports/samples.png``.

Generation runs through ``trainer.predict`` so it spreads over devices (``generate.devices``; several
processes use DDP, ``gloo`` on CPU). The plan is cut into fixed batches *before* distribution, each within
one run of rows drawn at the same guidance scale (one run for a single scale and no boost candidates), and
the last batch of a run is padded to full size (padding rows carry ``index = -1`` and are dropped), so every
sample is computed in exactly the same batch on 1 or many devices, and adding boost candidates (appended
after the ordinary rows, :mod:`synthgen.sampling.plan`) never changes the batches of the ordinary rows. With
the same number of threads per process the cohort is byte-identical either way (float kernels may round
differently with other thread counts or CPUs).
Each rank writes its rows to ``<generated>.parts/``; rank 0 reassembles them in plan order, removes the
parts, checks that every sample is finite and only then quantizes and writes the cohort (atomically). A
non-finite sample (NaN/inf: a diverged checkpoint or a numerical fault in a sampler) stops the stage with a
:class:`NonFiniteSampleError` naming the sample and the checkpoint; nothing is written, and a cohort already
at ``paths.generated`` from an earlier run is left as it was.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from .. import __version__
from ..data.dims import axial_preview
from ..data.prepared import load_meta, load_split
from ..data.transforms import dequantize, quantize
from ..errors import InputError
from ..io import atomic_path, dumps_json, save_npz, sha256_file
from ..reports.grid import sample_grid
from ..sampling.plan import Plan, build_plan
from ..models.base import GeneratorModule
from ..models.checkpoints import load_generator
from ..models.progress import progress_bar

log = logging.getLogger(__name__)

#: ``generate`` keys that only say where the work runs: the cohort is identical for any value.
DEVICE_KEYS = ("devices",)


class NonFiniteSampleError(InputError):
    """A generated sample holds NaN or inf: ``"<checkpoint>: <which sample, of which class, with which seed>"``.

    An :class:`InputError` (one line, exit code 2 from a stage script): the stage's inputs are the checkpoint
    and the sampling config, and changing one of them (retrain, another sampler or step count) is the fix.
    """


def check_finite(images: np.ndarray, plan: Plan, class_names: Sequence[str], checkpoint: Path,
                 out_dir: Path) -> None:
    """Raise :class:`NonFiniteSampleError` if any row of ``images`` ``(N, C, H, W)`` (plan order) holds a
    NaN or inf; the message names the first such sample (plan index, class, seed) and how many there are."""
    bad = np.flatnonzero(~np.isfinite(images.reshape(len(images), -1)).all(axis=1))
    if not len(bad):
        return
    i = int(bad[0])
    more = f"; {len(bad)} of {len(images)} samples are" if len(bad) > 1 else ""
    raise NonFiniteSampleError(
        checkpoint, f"generated sample {i} (class {class_names[int(plan.labels[i])]!r}, seed {int(plan.seeds[i])}) "
                    f"is not finite (NaN/inf{more}); nothing written to {out_dir}: the checkpoint may have "
                    f"diverged (retrain it), or the generate.sampling settings are numerically unstable")


def plan_runs(plan: Plan) -> list[tuple[int, int]]:
    """``[(start, end)]``: maximal runs of consecutive rows with the same guidance and candidate flag."""
    n = len(plan)
    if n == 0:
        return []
    change = (np.diff(plan.guidance) != 0) | (np.diff(plan.candidate.astype(np.int8)) != 0)
    cuts = [0, *(np.flatnonzero(change) + 1).tolist(), n]
    return list(zip(cuts[:-1], cuts[1:]))


class PlanBatches(Dataset):
    """Item ``b`` = batch ``b`` of the plan as ``{"labels", "seeds", "index"}`` ``(batch_size,)`` int64 and
    ``guidance`` ``(batch_size,)`` float32 (one value per batch). Batches never straddle two runs of
    :func:`plan_runs`; the last batch of a run is padded by repeating its last row with ``index = -1``."""

    def __init__(self, plan: Plan, batch_size: int):
        self.labels, self.seeds = torch.from_numpy(plan.labels), torch.from_numpy(plan.seeds)
        self.guidance = torch.from_numpy(np.asarray(plan.guidance, np.float32))
        self.batch_size = max(1, int(batch_size))
        self.starts = [(lo, end) for start, end in plan_runs(plan) for lo in range(start, end, self.batch_size)]

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, b: int) -> dict[str, torch.Tensor]:
        lo, end = self.starts[b]
        idx = torch.arange(lo, lo + self.batch_size)
        valid = idx < end
        src = torch.where(valid, idx, torch.full_like(idx, end - 1))
        return {"labels": self.labels[src], "seeds": self.seeds[src], "index": torch.where(valid, idx, -1),
                "guidance": self.guidance[src]}


class _PartWriter(BasePredictionWriter):
    """Each rank saves its predictions to ``parts_dir/rank<r>.npz`` at the end of predict."""

    def __init__(self, parts_dir: Path):
        super().__init__(write_interval="epoch")
        self.parts_dir = parts_dir

    def write_on_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any],
                           batch_indices: Sequence[Any]) -> None:
        preds = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        if preds:
            out = {k: torch.cat([p[k] for p in preds]).numpy() for k in ("images", "labels", "seeds", "index")}
        else:
            out = {"images": np.zeros((0, 1, 1, 1), np.float32), **{k: np.zeros(0, np.int64)
                                                                    for k in ("labels", "seeds", "index")}}
        try:
            save_npz(self.parts_dir / f"rank{trainer.global_rank}.npz", **out)
        except BaseException:  # e.g. a full disk: leave no scratch folder behind
            shutil.rmtree(self.parts_dir, ignore_errors=True)
            raise


def usable_sampling(model: GeneratorModule, sampling: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split the ``generate.sampling`` dict into what ``model.generate`` names and what it does not.

    A ``generate`` with explicitly named keyword arguments gets only those; the rest are returned as
    ignored (and recorded in cohort.json). Keys reaching a ``**kwargs`` catch-all count as ignored too.
    """
    params = inspect.signature(model.generate).parameters
    named = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)} - {"labels", "seeds"}
    used = {k: v for k, v in sampling.items() if k in named}
    return used, {k: v for k, v in sampling.items() if k not in named}


def takes_guidance(model: GeneratorModule) -> bool:
    """Whether ``model.generate`` names a ``guidance`` argument (the diffusion model; not the GAN)."""
    p = inspect.signature(model.generate).parameters.get("guidance")
    return p is not None and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)


def _predict_trainer(gen_cfg: Mapping[str, Any], parts_dir: Path) -> L.Trainer:
    devices = gen_cfg.get("devices", 1)
    accelerator = str(gen_cfg.get("accelerator") or "cpu")
    multi = devices == -1 or (isinstance(devices, int) and devices > 1) or isinstance(devices, (list, tuple))
    strategy = "ddp" if multi else "auto"
    bar, show_bar = progress_bar(True)  # a rich bar on a terminal; none in logs (CI, nohup, dvc repro > file)
    return L.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, logger=False,
                     enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=show_bar,
                     callbacks=[_PartWriter(parts_dir), *bar], default_root_dir=str(parts_dir))


def _assemble(parts_dir: Path, n: int) -> dict[str, np.ndarray]:
    parts = []
    for f in sorted(parts_dir.glob("rank*.npz")):
        with np.load(f, allow_pickle=False) as z:
            parts.append({k: z[k] for k in z.files})
    parts = [p for p in parts if len(p["index"])]
    if not parts:
        raise RuntimeError(f"no generated rows found in {parts_dir}")
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    keep = cat["index"] >= 0
    order = np.argsort(cat["index"][keep], kind="stable")
    out = {k: v[keep][order] for k, v in cat.items()}
    if not np.array_equal(out["index"], np.arange(n)):
        raise RuntimeError(f"generation returned rows {len(out['index'])} for a plan of {n} (lost or repeated)")
    return out


def config_hash(cfg: Mapping[str, Any]) -> str:
    return hashlib.sha256(dumps_json(cfg).encode()).hexdigest()


def generate(cfg: DictConfig) -> Path | None:
    """Run the generate stage for a composed config; returns the cohort folder (None on ranks > 0)."""
    gen_cfg = OmegaConf.to_container(cfg.generate, resolve=True)
    ckpt = Path(gen_cfg.get("checkpoint") or Path(cfg.paths.models) / "generator.ckpt")
    model, ck_meta = load_generator(ckpt)
    meta = load_meta(cfg.paths.prepared)
    if list(meta["class_names"]) != list(model.class_names):
        raise InputError(ckpt, f"trained on classes {model.class_names}, but data/prepared has "
                               f"{meta['class_names']}: re-run the train stage")
    uses_guidance = takes_guidance(model)
    curate_cfg = OmegaConf.to_container(cfg.curate, resolve=True) if "curate" in cfg else None
    plan = build_plan(gen_cfg, model.class_names, meta["counts"]["train"], curate_cfg, uses_guidance)
    if len(plan) == 0:
        raise InputError(None, "config generate: the plan is empty (all counts are 0)")
    sampling, ignored = usable_sampling(model, gen_cfg.get("sampling") or {})
    if ignored:
        log.info("%s.generate ignores sampling keys %s", type(model).__name__, sorted(ignored))
    # the per-row guidance of the plan (a class map, boost candidates) reaches generate() batch by batch
    model.sampling_kwargs = {**sampling, "guidance": 1.0} if uses_guidance else sampling

    out_dir = Path(cfg.paths.generated)
    parts_dir = out_dir.with_name(out_dir.name + ".parts")
    trainer = _predict_trainer(gen_cfg, parts_dir)
    if trainer.is_global_zero:
        shutil.rmtree(parts_dir, ignore_errors=True)
        parts_dir.mkdir(parents=True)
    trainer.strategy.barrier("generate_parts_ready")
    # volumes: their own batch (the last batch of each run is padded to full size: 256 at 32^3 is ~6x the work of 40)
    batch_size = gen_cfg.get("batch_size_3d") if len(model.image_shape) == 4 else None
    loader = torch.utils.data.DataLoader(PlanBatches(plan, int(batch_size or gen_cfg.get("batch_size", 256))),
                                         batch_size=None, shuffle=False)
    t0 = time.perf_counter()
    try:
        trainer.predict(model, dataloaders=loader, return_predictions=False)
        trainer.strategy.barrier("generate_parts_written")
        seconds = time.perf_counter() - t0
        if not trainer.is_global_zero:
            return None
        rows = _assemble(parts_dir, len(plan))
    finally:
        if trainer.is_global_zero:  # the parts never outlive the stage, whether it succeeded or not
            shutil.rmtree(parts_dir, ignore_errors=True)
    if not (np.array_equal(rows["labels"], plan.labels) and np.array_equal(rows["seeds"], plan.seeds)):
        raise RuntimeError("generated rows do not match the plan")
    check_finite(rows["images"], plan, model.class_names, ckpt, out_dir)
    images = quantize(rows["images"], meta["dtype"])
    # The model config the checkpoint was trained with (the current cfg.model may have changed since).
    model_cfg = ck_meta.get("config_model") or OmegaConf.to_container(cfg.model, resolve=True)
    record = {
        "generator": str(ck_meta.get("name") or model_cfg.get("name") or ck_meta["target"]),
        "model_target": ck_meta["target"],
        "checkpoint": str(ckpt),
        "checkpoint_sha256": sha256_file(ckpt),
        "config": {"model": model_cfg, "seed": int(cfg.seed),
                   "generate": {k: v for k, v in gen_cfg.items() if k not in DEVICE_KEYS}},
        "sampling_used": sampling,
        "sampling_ignored": sorted(ignored),
        "class_names": list(model.class_names),
        "counts": plan.counts,
        "candidates": plan.candidates,
        "candidate_guidance": sorted({float(g) for g in plan.guidance[plan.candidate]}),
        "guidance_per_class": {str(model.class_names[c]): float(plan.guidance[(plan.labels == c) & ~plan.candidate][0])
                               for c in range(len(model.class_names)) if ((plan.labels == c) & ~plan.candidate).any()},
        "n": int(len(plan)),
        "image_shape": [int(v) for v in images.shape[1:]],
        "dtype": str(images.dtype),
        "seed_rule": "seed = (generate.seed << 32) | (label << 24) | k, k = index within the class; boost "
                     "candidate m of guidance value j: k = 2**23 | (j << 19) | m",
        "guidance_note": "per-sample guidance: the classifier-free guidance scale of each sample; 1.0 for a "
                         "model without guidance (GAN)",
        "synthgen_version": __version__,
    }
    if plan.candidates:  # the curate keys that shaped the plan belong to the cohort's identity
        cur = curate_cfg or {}
        record["config"]["boost_candidates"] = {
            "classes": list(cur.get("classes") or []), "oversample": cur.get("oversample"),
            "guidance": list(cur.get("guidance") or []), "amounts": list((cur.get("plan") or {}).get("amounts") or [])}
    record["config_hash"] = config_hash({"config": record["config"], "checkpoint_sha256": record["checkpoint_sha256"]})
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        save_npz(tmp / "cohort.npz", images=images, labels=plan.labels, seeds=plan.seeds,
                 guidance=plan.guidance.astype(np.float32), boost_candidate=plan.candidate.astype(bool))
        (tmp / "cohort.json").write_text(dumps_json(record), encoding="utf-8")
    real = load_split(cfg.paths.prepared, "train")
    sample_grid(Path(cfg.paths.reports) / "samples.png", model.class_names, axial_preview(real.images), real.labels,
                axial_preview(dequantize(images)), plan.labels, columns=int(gen_cfg.get("grid_columns", 10)),
                rows=int(gen_cfg.get("grid_rows", 2)),
                title=f"{record['generator']}: real (top row) vs synthetic, per class")
    log.info("generated %d images in %.1f s (%.1f images/s) -> %s", len(plan), seconds, len(plan) / seconds, out_dir)
    return out_dir
