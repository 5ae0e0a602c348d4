"""``synthgen verify``: passes on a fresh export, fails (non-zero) on every kind of mismatch."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from export_fixture import build_audited, export_cfg
from synthgen.cli import main as cli
from synthgen.stages.export import export
from synthgen.export.verify import verify_export
from synthgen.io import sha256_file


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verify")
    build_audited(root, n=18)
    return export(export_cfg(root, **{"shard_size.samples": 5, "format": "nifti"}))


@pytest.fixture
def copy(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "export"))


def _index(d: Path) -> dict:
    return json.loads((d / "index.json").read_text())


def _save_index(d: Path, idx: dict) -> None:
    (d / "index.json").write_text(json.dumps(idx))


def test_fresh_export_verifies_in_process_and_as_console_command(pristine, capsys):
    assert verify_export(pristine) == ([], {"shards": 4, "samples": 18, "files": 18})
    assert cli(["verify", str(pristine)]) == 0
    assert "ok (18 samples in 4 shards, 18 files)" in capsys.readouterr().out
    r = subprocess.run([sys.executable, "-m", "synthgen.cli", "verify", str(pristine)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_corrupted_shard_fails(copy, capsys):
    p = copy / "synthetic-000001.tar"
    data = bytearray(p.read_bytes())
    data[600] ^= 0xFF  # inside the first member's payload
    p.write_bytes(bytes(data))
    assert cli(["verify", str(copy)]) == 1
    assert "synthetic-000001.tar: sha256 mismatch" in capsys.readouterr().out


def test_deleted_shard_fails(copy):
    (copy / "synthetic-000002.tar").unlink()
    problems, _ = verify_export(copy)
    assert any("listed shard missing" in p for p in problems)
    assert any("totals.samples" in p for p in problems)


def test_changed_counts_fail(copy):
    idx = _index(copy)
    idx["shards"][0]["samples"] += 1
    idx["shards"][1]["classes"]["normal"] += 1
    idx["totals"]["classes"]["pneumonia"] -= 1
    idx["shardlist"][2]["nsamples"] = 0
    _save_index(copy, idx)
    problems, _ = verify_export(copy)
    assert any("synthetic-000000.tar: 5 samples, index says 6" in p for p in problems), problems
    assert any("synthetic-000001.tar: class counts" in p for p in problems)
    assert any("totals.classes" in p for p in problems)
    assert any("shardlist" in p for p in problems)
    assert cli(["verify", str(copy)]) == 1


def test_unlisted_shard_and_files_fail(copy):
    shutil.copy(copy / "synthetic-000000.tar", copy / "synthetic-000009.tar")
    nifti = sorted((copy / "nifti").iterdir())
    nifti[0].unlink()
    shutil.copy(nifti[1], copy / "nifti" / "extra.nii.gz")
    problems, _ = verify_export(copy)
    assert any("synthetic-000009.tar: shard not listed" in p for p in problems)
    assert any("listed file missing" in p for p in problems)
    assert any("extra.nii.gz: file not listed" in p for p in problems)


def test_unreadable_sample_with_matching_checksum_fails(copy):
    """A shard rewritten with a broken npy (index checksums updated) is still caught by content checks."""
    p = copy / "synthetic-000000.tar"
    samples = list(wds.WebDataset(str(p), shardshuffle=False))
    with wds.TarWriter(str(p), encoder=False, mtime=0) as w:
        for i, s in enumerate(samples):
            s = {k: v for k, v in s.items() if k in ("__key__", "cls", "json", "npy", "png")}
            if i == 1:
                s["npy"] = s["npy"][:-3]
            if i == 2:
                s["json"] = json.dumps({**json.loads(s["json"]), "synthetic": False}).encode()
            w.write(s)
    idx = _index(copy)
    idx["shards"][0].update(sha256=sha256_file(p), bytes=p.stat().st_size)
    _save_index(copy, idx)
    problems, _ = verify_export(copy)
    assert any("unreadable" in q for q in problems) and any("synthetic: true" in q for q in problems)
    assert all(np.load(io.BytesIO(s["npy"])) is not None for s in samples)  # the originals were fine


def test_missing_card_or_index_fails(copy, tmp_path):
    (copy / "README.md").unlink()
    assert any("dataset card missing" in p for p in verify_export(copy)[0])
    (copy / "index.json").unlink()
    assert cli(["verify", str(copy)]) == 1
    assert cli(["verify", str(tmp_path / "nothing")]) == 1
