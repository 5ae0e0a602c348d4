"""Benchmarks are never timed in the test suite; this checks that every case imports and that the runner
writes rows with values and ratios (one cheap case at tiny sizes)."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.run import CASES  # noqa: E402


@pytest.mark.parametrize("name", CASES)
def test_case_module_has_run(name: str) -> None:
    mod = importlib.import_module(f"benchmarks.cases.{name}")
    assert callable(mod.run) and mod.__doc__, name


def test_runner_quick_privacy_knn(tmp_path: Path) -> None:
    env = {**os.environ, "SYNTHGEN_BENCH_KNN_SIZES": "600", "SYNTHGEN_BENCH_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--cases", "privacy_knn",
                        "--out", str(tmp_path)], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["quick"] and not payload["failures"] and payload["machine"]["cpu_count"]
    rows = payload["rows"]
    variants = {(row["variant"].split()[0], row["metric"]) for row in rows}
    assert variants == {(b, m) for b in ("naive", "ours", "faiss") for m in ("search CPU s", "peak RSS GiB")}
    for row in rows:
        assert row["value"] > 0 and math.isfinite(row["value"]), row
        if not row["variant"].startswith("naive"):
            assert row["reference"].startswith("naive") and row["ratio"] > 0, row
        if row["metric"] == "search CPU s":  # exact search: every backend finds the same neighbours
            assert min(row["extra"]["same_ids"].values()) > 0.95, row
    assert "| privacy_knn | ours 0.6k x 0.6k pixel d147 | search CPU s |" in (tmp_path / "results.md").read_text()


def test_bf16_auto_times_every_default_network_both_ways(tmp_path: Path) -> None:
    from synthgen.precision import native_bf16

    out = tmp_path / "bf16.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bf16_auto.py"), "--batch", "2", "--repeats", "1",
                        "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert [row["network"].split()[0] for row in rows] == ["ddpm", "cgan", "evaluate"]
    for row in rows:
        assert row["fp32_s"] > 0 and row["bf16_s"] > 0 and row["auto"] == ("bf16" if native_bf16() else "fp32")
        speedup = row["bf16_speedup"]  # rounded to 0.01: a tie may go either way
        assert row["auto_is_faster"] == ((speedup > 1) == native_bf16()) or abs(speedup - 1) <= 0.01, row
