"""Shared fixtures. Real MedMNIST data lives outside the repo (../shared/data or $SYNTHGEN_SHARED_DATA);
tests that need it skip cleanly when it is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SYNTHGEN_SHARED_DATA", REPO.parent / "shared" / "data"))
CHECK_CONTRACTS = REPO.parent / "shared" / "tools" / "check_contracts.py"

os.environ.setdefault("SYNTHGEN_CONF", str(REPO / "conf"))
# Stage scripts run in subprocesses must import this checkout's synthgen, not another editable install.
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def shared_npz(name: str) -> Path:
    p = SHARED / name
    if not p.exists():
        pytest.skip(f"{p} not present (set SYNTHGEN_SHARED_DATA)")
    return p


@pytest.fixture
def bloodmnist() -> Path:
    return shared_npz("bloodmnist.npz")


@pytest.fixture
def pneumoniamnist() -> Path:
    return shared_npz("pneumoniamnist_imbalanced.npz")


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models on a 2-core machine shared with other jobs run several
    times slower with a second OpenMP thread that only spin-waits."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_medmnist_npz(path: Path, n: int = 40, size: int = 28, channels: int = 1, n_classes: int = 3,
                      seed: int = 0) -> Path:
    """A small MedMNIST-style archive with class-dependent content (for fast tests)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, k in (("train", n), ("val", n // 4), ("test", n // 2)):
        y = rng.integers(0, n_classes, size=(k, 1))
        shape = (k, size, size) if channels == 1 else (k, size, size, channels)
        x = rng.integers(0, 60, size=shape).astype(np.uint8)
        x += (y[:, 0] * 60).astype(np.uint8).reshape((k,) + (1,) * (x.ndim - 1))
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    np.savez(path, **arrays)
    return path


def run_prepare(*overrides: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """``python pipelines/prepare.py <overrides>`` in a subprocess, the way a user runs the stage."""
    return subprocess.run([sys.executable, str(REPO / "pipelines" / "prepare.py"), *overrides],
                          cwd=cwd, capture_output=True, text=True)


def expect_prepare_error(tmp_path: Path, overrides: list[str], named: str | Path, needle: str) -> str:
    """Run the prepare stage on bad input and assert the bad-input contract: exit != 0, exactly one
    stderr line that names ``named`` and contains ``needle``, and no output folder (or temp) left behind.
    Returns the error line."""
    out = tmp_path / "out"
    r = run_prepare(*overrides, f"paths.prepared={out}")
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and str(named) in err[0] and needle in err[0], r.stderr
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    return err[0]


def write_labels(path: Path, rows: list[tuple], header: str = "path,label,patient_id") -> Path:
    """A labels CSV with ``header`` and one line per tuple."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header] + [",".join(str(v) for v in r) for r in rows]) + "\n", encoding="utf-8")
    return path
