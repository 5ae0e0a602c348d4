"""Atomicity: a SIGKILLed export leaves the previous export intact (or none), never a half-written folder,
and a re-run completes.

The killed exports run in forked child processes (real processes, SIGKILLed, but without paying the
interpreter start and torch import again); the final re-run goes through the DVC stage script.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import runpy
import sys
import time
from pathlib import Path

import pytest

from export_fixture import REPO, build_audited, export_cfg, export_overrides
from synthgen.stages.export import export
from synthgen.export.verify import verify_export


def _state(out: Path) -> str:
    """'absent', or the shard size of a complete export (verify passes); anything else fails the test."""
    if not out.exists():
        return "absent"
    problems, _ = verify_export(out, decode=False)
    assert problems == [], f"half-written export after SIGKILL: {problems[:5]}"
    return str(json.loads((out / "index.json").read_text())["shards"][0]["samples"])


def test_sigkill_never_leaves_a_half_written_export(tmp_path, monkeypatch):
    work = tmp_path
    build_audited(work, n=800, size=16)
    out = work / "data/export/synthetic"
    export(export_cfg(work, **{"shard_size.samples": 100}))  # warm-up: the forked runs inherit warm imports
    fork = multiprocessing.get_context("fork")

    def forked_seconds() -> float:  # start to exit of a forked run, as the kills below see it
        child = fork.Process(target=export, args=(export_cfg(work, **{"shard_size.samples": 100}),))
        t0 = time.perf_counter()
        child.start()
        child.join(timeout=120)
        assert child.exitcode == 0
        return time.perf_counter() - t0

    # Timed on forked runs, not in this process: a forked run was measured 4x faster than an in-process one
    # (0.1 s vs 0.4 s on an AVX2 EPYC), so kills timed on the latter all came after the run had finished.
    duration = sorted(forked_seconds() for _ in range(3))[1]
    assert _state(out) == "100"
    rng = random.Random(0)
    previous, last_complete, interrupted = "100", "100", 0
    for it in range(16):  # until >= 3 kills landed mid-run (a loaded CI machine makes some land late)
        if it >= 6 and interrupted >= 3:
            break
        size = 50 + it  # each run would write a different export
        child = fork.Process(target=export, args=(export_cfg(work, **{"shard_size.samples": size}),))
        child.start()
        if it % 2 == 0:  # a random moment of the run (loading, writing, renaming) or just after it
            time.sleep(rng.uniform(0.0, 1.5 * duration))
        else:  # while the temp folder is being filled
            deadline = time.time() + 60
            while not list(out.parent.glob(".synthetic.tmp-*")) and child.is_alive() and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.5 * duration))
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=60)
        state = _state(out)
        # A kill between atomic_path's two renames leaves no export (the previous one sits in .old-<pid>);
        # the next run that gets as far as clean_stale moves it back, so the last complete export reappears.
        assert state in {previous, str(size), "absent", last_complete}, (it, state, previous, last_complete)
        interrupted += state != str(size)
        previous = state
        if state != "absent":
            last_complete = state
    assert interrupted >= 3, "the kills came too late to test anything"
    # The re-run (the DVC stage script) completes and cleans the killed runs' temp folders.
    argv = [str(REPO / "pipelines" / "export.py"), *export_overrides(work, **{"shard_size.samples": 64})]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        runpy.run_path(argv[0], run_name="__main__")
    assert done.value.code == 0
    assert _state(out) == "64"
    assert [p.name for p in out.parent.iterdir()] == ["synthetic"]


def test_stale_temp_folders_are_cleaned_and_an_orphaned_previous_export_restored(tmp_path):
    from synthgen.stages.export import clean_stale

    build_audited(tmp_path, n=6)
    out = export(export_cfg(tmp_path))
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    while True:
        try:
            os.kill(dead, 0)
            dead += 1
        except ProcessLookupError:
            break
    # killed between atomic_path's two renames: only .old-<pid> (previous) and .tmp-<pid> (new) exist
    os.replace(out, out.parent / f".synthetic.old-{dead}")
    (out.parent / f".synthetic.tmp-{dead}").mkdir()
    live = out.parent / f".synthetic.tmp-{os.getpid()}"  # a running export's folder is left alone
    live.mkdir()
    clean_stale(out)
    assert _state(out) == "6"  # the previous export (6 samples in its one shard) is back
    assert sorted(p.name for p in out.parent.iterdir()) == [live.name, "synthetic"]
