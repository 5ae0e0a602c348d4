"""Fixture builder for the export tests: a small audited cohort that follows the data/audited contract
(DEVELOPERS.md) exactly, plus the optional files the dataset card reads. Reused by every export test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from synthgen.config import compose
from synthgen.io import save_npz, write_json

REPO = Path(__file__).resolve().parent.parent


def find_check_contracts() -> Path | None:
    """``shared/tools/check_contracts.py`` next to this checkout (main: ../shared, worktree: ../../shared)."""
    for base in (REPO.parent, REPO.parent.parent):
        p = base / "shared" / "tools" / "check_contracts.py"
        if p.exists():
            return p
    return None


CLASS_NAMES = ["normal", "pneumonia", "rare.case"]  # a dot in a class name must not reach the keys


def build_audited(root: Path, n: int = 24, channels: int = 1, size: int = 8, dtype: str = "uint8",
                  class_names: Sequence[str] = CLASS_NAMES, seed: int = 0, images: np.ndarray | None = None,
                  labels: np.ndarray | None = None, passed: bool = True, extras: bool = True,
                  generator: str = "fixture-gan") -> Path:
    """Write ``root/data/audited/cohort.{npz,json}`` (and, with ``extras``, ``root/data/prepared/meta.json``
    and ``root/metrics/{evaluate,privacy,train}.json``). Returns ``root``.

    ``images`` ``(N, C, H, W)`` uint8|uint16 and ``labels`` override the seeded random content.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    k = len(class_names)
    if images is None:
        top = np.iinfo(dtype).max
        labels = np.arange(n) % k if labels is None else np.asarray(labels)
        images = rng.integers(0, top // 2, size=(n, channels, size, size), dtype=np.int64)
        images = (images + labels[:, None, None, None] * (top // (2 * k))).astype(dtype)
    n = len(images)
    labels = (np.arange(n) % k if labels is None else np.asarray(labels)).astype(np.int64)
    index = np.sort(rng.choice(n * 2, size=n, replace=False)).astype(np.int64)  # gaps = flagged rows
    counts = {c: int((labels == i).sum()) for i, c in enumerate(class_names)}
    save_npz(root / "data/audited/cohort.npz", images=images, labels=labels,
             seeds=(1000 + index).astype(np.int64), index=index,
             privacy_nn_distance=rng.random(n).astype(np.float32),
             privacy_membership_auc=np.full(n, 0.52, dtype=np.float32))
    meta = {
        "generator": generator, "model_target": "synthgen.models.fixture.FixtureGAN",
        "checkpoint_sha256": "ab" * 32, "config_hash": "0123456789abcdef",
        "config": {"model": {"_target_": "synthgen.models.fixture.FixtureGAN", "width": 8},
                   "trainer": {"max_epochs": 3, "max_steps": 120, "precision": "bf16-mixed"},
                   "generate": {"per_class": 8, "seed": 0}, "data": {"path": "/secret/site/cohort.npz"}},
        "class_names": list(class_names), "counts": counts, "synthgen_version": "0.1.0",
        "privacy": {"passed": passed, "thresholds": {"nn_distance": 0.05}, "n_flagged": n, "n_kept": n},
    }
    write_json(root / "data/audited/cohort.json", meta)
    if extras:
        c, h = images.shape[1], images.shape[2]
        write_json(root / "data/prepared/meta.json", {
            "class_names": list(class_names), "image_size": int(h), "channels": int(c), "dtype": str(images.dtype),
            "counts": {s: counts for s in ("train", "val", "test", "holdout")},
            "source": {"kind": "fixture", "name": "fixture", "modality": "CR"}, "normalization": "x / 255",
            "rare": {"classes": [], "keep": None}})
        write_json(root / "metrics/evaluate.json", {"fid": 12.5, "per_class": {"normal": {"fid": 10.0}},
                                                    "downstream": {"balanced_accuracy": 0.81}})
        write_json(root / "metrics/privacy.json", {"membership_auc": 0.52, "n_flagged": n, "passed": passed})
        write_json(root / "metrics/train.json", {"steps": 120, "wall_seconds": 33.0})
    return root


def export_overrides(root: Path, **export: object) -> list[str]:
    """Hydra overrides pointing every path at ``root`` plus ``export.<k>=<v>``."""
    root = Path(root)
    ov = [f"paths.{k}={root / v}" for k, v in (("prepared", "data/prepared"), ("audited", "data/audited"),
                                                ("export", "data/export"), ("metrics", "metrics"),
                                                ("reports", "reports"), ("generated", "data/generated"),
                                                ("models", "models"))]
    ov += [f"export.{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in export.items()]
    return ov


def export_cfg(root: Path, **export: object):
    """The composed pipeline config with paths under ``root`` (``export.<k>`` overrides from kwargs)."""
    return compose(export_overrides(root, **export))


def run_without_synthgen(code: str, cwd: Path) -> "subprocess.CompletedProcess[str]":
    """Run ``code`` in a Python whose environment cannot import synthgen, from ``cwd``.

    ``-I`` drops PYTHONPATH, the user site and the script folder; ``-S`` skips ``site``, so no ``.pth``
    file (such as an editable synthgen install) runs; the interpreter's site-packages folders are then
    appended by hand, so numpy and webdataset import as for any consumer. The code first asserts that
    ``import synthgen`` fails.
    """
    import os
    import site
    import subprocess
    import sys

    prelude = (
        f"import sys; sys.path += {site.getsitepackages()!r}\n"
        "try:\n    import synthgen\nexcept ImportError:\n    pass\n"
        "else:\n    raise SystemExit('synthgen is importable: ' + synthgen.__file__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run([sys.executable, "-I", "-S", "-c", prelude + code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
