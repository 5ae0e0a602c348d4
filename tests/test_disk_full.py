"""A full disk (ENOSPC; also a quota, EDQUOT, or a read-only file system, EROFS) anywhere in a stage: one
line naming the path being written, exit 2, and nothing partial left (issue 13)."""

from __future__ import annotations

import errno
import os
import runpy
import shutil
import subprocess
import sys

import numpy as np
import pytest

from export_fixture import REPO, build_audited, export_overrides
from synthgen.runner import run_stage
from synthgen.errors import WriteError
from synthgen.io import atomic_path, save_npz, write_json

DISK_ERRNOS = [errno.ENOSPC, errno.EDQUOT, errno.EROFS]


@pytest.mark.parametrize("code", DISK_ERRNOS, ids=[errno.errorcode[c] for c in DISK_ERRNOS])
def test_atomic_file_write_refused_names_the_file_and_keeps_the_old_content(tmp_path, code):
    out = tmp_path / "metrics.json"
    write_json(out, {"old": 1})
    with pytest.raises(WriteError) as e:
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise OSError(code, os.strerror(code))
    assert str(e.value).startswith(f"{out}: cannot write: ") and errno.errorcode[code] in str(e.value)
    assert "\n" not in str(e.value)
    assert out.read_text() == '{\n  "old": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp left


def test_nested_write_names_the_real_file_not_the_temp(tmp_path, monkeypatch):
    import zipfile

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "generated"
    monkeypatch.setattr(zipfile.ZipFile, "writestr", full)
    with pytest.raises(WriteError) as e:
        with atomic_path(out) as tmp:
            tmp.mkdir()
            (tmp / "cohort.json").write_text("{}")
            save_npz(tmp / "cohort.npz", x=np.zeros(3))
    assert e.value.path == str(out / "cohort.npz"), str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_run_stage_turns_a_bare_disk_error_into_one_line(capsys):
    def main(_):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/reports/samples.png")

    assert run_stage(main, []) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: /data/reports/samples.png: cannot write: no space left on device [ENOSPC]; "
                   "free space or write the output elsewhere"]

    def bug(_):
        raise OSError(errno.EACCES, "Permission denied")  # not a full disk: not swallowed

    with pytest.raises(PermissionError):
        run_stage(bug, [])


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes were written (as write(2) does)."""

    def __init__(self, path: str, room: int):
        self._f, self.room = open(path, "wb"), room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _export_stage(argv: list[str]) -> int:
    script = str(REPO / "pipelines" / "export.py")
    old = sys.argv
    sys.argv = [script, *argv]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        sys.argv = old
    return 0


def test_export_stage_on_a_full_disk_monkeypatched(tmp_path, monkeypatch, capsys):
    import synthgen.export.shard_writer as shards

    build_audited(tmp_path, n=60, size=16)
    ov = export_overrides(tmp_path, **{"shard_size.samples": 20})
    assert _export_stage(ov) == 0  # a previous, complete export
    out = tmp_path / "data/export/synthetic"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    monkeypatch.setattr(shards, "open", lambda path, mode: _FullDisk(path, room=30_000), raising=False)
    assert _export_stage([*ov, "export.shuffle=false"]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {out}") and "no space left on device [ENOSPC]" in errors[0], errors
    assert "Traceback" not in errors[0]
    assert sorted(p.name for p in out.parent.iterdir()) == ["synthetic"]  # no temp folder
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # previous export intact


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 64 KiB tmpfs (needs root and mount(8)); skips cleanly where mounting is not allowed."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if shutil.which("mount") is None or (hasattr(os, "geteuid") and os.geteuid() != 0):
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_export_stage_into_a_tiny_tmpfs(tmp_path, tiny_tmpfs):
    build_audited(tmp_path, n=400, size=32)  # ~0.4 MB of shards: cannot fit in 64 KiB
    ov = [*export_overrides(tmp_path), f"paths.export={tiny_tmpfs}"]
    r = subprocess.run([sys.executable, str(REPO / "pipelines" / "export.py"), *ov], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(errors) == 1 and f"{tiny_tmpfs}/synthetic" in errors[0] and "[ENOSPC]" in errors[0], errors
    assert list(tiny_tmpfs.iterdir()) == [], "partial output left on the full disk"
