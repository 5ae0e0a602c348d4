"""What several benchmark cases share: prepared BloodMNIST, a diffusion checkpoint, the evaluate features.

* :func:`prepared_blood`: ``data/prepared`` of BloodMNIST (``ctx.shared_data/bloodmnist.npz``), written once
  per run into ``ctx.workdir`` by the real prepare stage code (or the prepared folder that belongs to the
  given checkpoint).
* :func:`diffusion_model`: the ``DiffusionModule`` from ``ctx.checkpoint`` (``--checkpoint`` /
  ``$SYNTHGEN_BENCH_DDPM_CKPT``), else one trained here on the prepared training split with the default
  recipe (``conf/model/ddpm.yaml``) for a fixed step budget (``--quick``: 100 steps x 32 images; else
  600 x 128); reused by every case of the run.
* :func:`feature_extractor`: the evaluate stage's domain feature extractor (``synthgen.metrics.features``),
  trained on the real training split with ``conf/evaluate/default.yaml``'s recipe and cached in
  ``<repo>/.cache/evaluate`` (keyed by the data and recipe hash, so a re-run reuses it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks.harness import Context

REPO = Path(__file__).resolve().parents[1]
_MEMO: dict[tuple[str, str], Any] = {}


def _memo(ctx: Context, key: str, make):
    k = (ctx.workdir, key)
    if k not in _MEMO:
        _MEMO[k] = make()
    return _MEMO[k]


def checkpoint_path(ctx: Context) -> Path | None:
    """The diffusion checkpoint to benchmark, or ``None`` (train one here)."""
    p = getattr(ctx, "checkpoint", None) or os.environ.get("SYNTHGEN_BENCH_DDPM_CKPT")
    return Path(p) if p else None


def prepared_blood(ctx: Context) -> Path:
    """Prepared folder (``train/val/test/holdout.npz`` + ``meta.json``) of the data the checkpoint was trained on.

    ``$SYNTHGEN_BENCH_PREPARED`` when set; else, with a checkpoint, ``<run>/data/prepared`` next to
    ``<run>/models/``; else BloodMNIST prepared now (``data=medmnist`` defaults) into ``ctx.workdir``.
    """
    from synthgen.errors import InputError

    def make() -> Path:
        ckpt = checkpoint_path(ctx)
        given = os.environ.get("SYNTHGEN_BENCH_PREPARED")
        if given or ckpt is not None:
            p = Path(given or ckpt.resolve().parent.parent / "data" / "prepared")
            if not (p / "meta.json").exists():
                raise InputError(p, "no prepared data here (set SYNTHGEN_BENCH_PREPARED to the checkpoint's)")
            return p
        src = Path(ctx.shared_data) / "bloodmnist.npz"
        if not src.exists():
            raise InputError(src, "BloodMNIST not found: set SYNTHGEN_SHARED_DATA or pass --checkpoint")
        from synthgen.config import compose
        from synthgen.stages.prepare import prepare

        out = Path(ctx.workdir) / "blood_prepared"
        cfg = compose(["data=medmnist", f"data.path={src.resolve()}"], config_dir=REPO / "conf")
        return prepare(cfg, out)

    return _memo(ctx, "prepared", make)


def diffusion_model(ctx: Context) -> tuple[Any, str]:
    """``(DiffusionModule in eval mode on ctx.device, description)``: loaded, or trained here (see module doc)."""

    def make():
        import torch

        from synthgen.models.checkpoints import load_generator

        ckpt = checkpoint_path(ctx)
        if ckpt is not None:
            model, _ = load_generator(ckpt)
            return model.to(ctx.device).eval(), f"checkpoint {ckpt}"
        steps, batch = (100, 32) if ctx.quick else (600, 128)
        model = train_small(ctx, "ddpm", steps, batch)
        path = Path(ctx.workdir) / "ddpm_small.pt"
        torch.save(model.state_dict(), path)
        return model.to(ctx.device).eval(), f"trained here: {steps} steps x {batch} images on BloodMNIST"

    return _memo(ctx, "diffusion", make)


def build(ctx: Context, name: str, **overrides: Any) -> Any:
    """A fresh model from ``conf/model/<name>.yaml`` for the prepared BloodMNIST classes and shape."""
    from omegaconf import OmegaConf

    from synthgen.data.prepared import load_meta, load_split
    from synthgen.stages.train import build_model

    prepared = prepared_blood(ctx)
    cfg = OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml")
    root = OmegaConf.create({"seed": 0, "model": cfg})
    for k, v in overrides.items():
        OmegaConf.update(root, f"model.{k}", v)
    shape = tuple(load_split(prepared, "val").images.shape[1:])
    return build_model(OmegaConf.to_container(root, resolve=True)["model"], load_meta(prepared)["class_names"], shape)


def train_loader(ctx: Context, batch: int):
    """Seeded, shuffled DataLoader of the prepared training split, float images in [0, 1] and labels."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from synthgen.data.prepared import load_split

    train = load_split(prepared_blood(ctx), "train")
    ds = TensorDataset(torch.from_numpy(train.images).float(), torch.from_numpy(train.labels).long())
    return DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))


def train_small(ctx: Context, name: str, steps: int, batch: int) -> Any:
    """Train ``model=<name>`` for ``steps`` optimizer steps with Lightning (CPU or ``ctx.device``)."""
    import lightning as L

    L.seed_everything(0, verbose=False)
    model = build(ctx, name, batch_size=batch)
    accel = "gpu" if ctx.device.startswith("cuda") else "cpu"
    trainer = L.Trainer(max_steps=steps, max_epochs=-1, accelerator=accel, devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, train_loader(ctx, batch))
    return model.eval()


def feature_extractor(ctx: Context) -> Any:
    """The evaluate stage's feature extractor for the prepared training split (trained once, cached on disk)."""

    def make():
        from omegaconf import OmegaConf

        from synthgen.data.prepared import load_meta, load_split
        from synthgen.metrics.classifier import Recipe
        from synthgen.metrics.features import load_or_train

        prepared = prepared_blood(ctx)
        ecfg = OmegaConf.load(REPO / "conf" / "evaluate" / "default.yaml")
        steps = 200 if ctx.quick else int(ecfg.features.steps)
        recipe = Recipe.from_config(ecfg.classifier, steps=steps)
        train = load_split(prepared, "train", as_float=False)
        n_classes = len(load_meta(prepared)["class_names"])
        return load_or_train(train.images, train.labels, n_classes, recipe, int(ecfg.features.seed),
                             bool(ecfg.features.balanced), REPO / ".cache" / "evaluate")

    return _memo(ctx, "features", make)
