"""Export shards: contents, keys, determinism, shard limits, input checks, outside contract check."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from export_fixture import build_audited, export_cfg, find_check_contracts
from synthgen.errors import ConfigError, InputError
from synthgen.stages.export import export
from synthgen.export.encode import encode_png, preview_8bit
from synthgen.stages.export import parse_formats

CHECK_CONTRACTS = find_check_contracts()


def _samples(out: Path) -> list[dict]:
    return list(wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False))


def _audited(root: Path) -> dict:
    with np.load(root / "data/audited/cohort.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("channels,dtype", [(1, "uint8"), (3, "uint8"), (1, "uint16")])
def test_every_sample_carries_exact_intensities_and_provenance(tmp_path, channels, dtype):
    build_audited(tmp_path, n=20, channels=channels, dtype=dtype)
    out = export(export_cfg(tmp_path, **{"shard_size.samples": 6}))
    a = _audited(tmp_path)
    by_index = {int(i): r for r, i in enumerate(a["index"])}
    samples = _samples(out)
    assert len(samples) == 20
    keys = [s["__key__"] for s in samples]
    assert len(set(keys)) == 20 and not any("." in k for k in keys)
    for s in samples:
        assert sorted(k for k in s if not k.startswith("__")) == ["cls", "json", "npy", "png"]
        meta = json.loads(s["json"])
        r = by_index[meta["index"]]
        x = np.load(io.BytesIO(s["npy"]), allow_pickle=False)
        assert x.dtype == np.dtype(dtype) and np.array_equal(x, a["images"][r])
        assert int(s["cls"]) == a["labels"][r] == meta["label"]
        assert meta["synthetic"] is True and meta["seed"] == a["seeds"][r]
        assert meta["class_name"] == ["normal", "pneumonia", "rare.case"][meta["label"]]
        assert meta["generator"] == "fixture-gan" and meta["checkpoint_sha256"] == "ab" * 32
        assert meta["config_hash"] == "0123456789abcdef" and meta["synthgen_version"] == "0.1.0"
        assert meta["privacy"]["membership_auc"] == 0.52
        assert meta["privacy"]["nn_distance"] == pytest.approx(float(a["privacy_nn_distance"][r]), rel=1e-6)
        png = np.asarray(Image.open(io.BytesIO(s["png"])))
        assert png.dtype == np.uint8 and np.array_equal(png, preview_8bit(x))


def test_preview_of_16_bit_rounds_to_8_bits():
    x = np.array([[[0, 128, 129, 257, 65535]]], dtype=np.uint16)
    assert preview_8bit(x).tolist() == [[0, 0, 1, 1, 255]]
    every = np.arange(65536, dtype=np.uint16).reshape(1, 256, 256)
    assert np.array_equal(preview_8bit(every), np.rint(every[0].astype(np.float64) * 255 / 65535).astype(np.uint8))
    rng = np.random.default_rng(0)
    for shape in [(3, 4), (1, 1), (9, 4, 3), (28, 28)]:
        img = rng.integers(0, 256, size=shape).astype(np.uint8)
        for level in (0, 1, 9):
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(img, level)))), img)


def test_export_is_byte_identical_across_runs(tmp_path):
    build_audited(tmp_path, n=25)
    cfg = export_cfg(tmp_path, **{"shard_size.samples": 10})
    a = export(cfg, out_dir=tmp_path / "a")
    b = export(cfg, out_dir=tmp_path / "b")
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert [p.name for p in files_a] == ["README.md", "index.json"] + [f"synthetic-00000{i}.tar" for i in range(3)]
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    with tarfile.open(a / "synthetic-000000.tar") as tf:
        assert {m.mtime for m in tf.getmembers()} == {0}


def test_shards_respect_sample_and_byte_limits_and_mix_classes(tmp_path):
    build_audited(tmp_path, n=30, size=16)
    idx = json.loads((export(export_cfg(tmp_path, **{"shard_size.samples": 8})) / "index.json").read_text())
    assert [s["samples"] for s in idx["shards"]] == [8, 8, 8, 6]
    assert idx["shardlist"] == [{"url": f"synthetic-00000{i}.tar", "nsamples": s["samples"], "filesize": s["bytes"]}
                                for i, s in enumerate(idx["shards"])] and idx["wids_version"] == 1
    assert idx["totals"]["samples"] == 30 and idx["totals"]["classes"] == {"normal": 10, "pneumonia": 10, "rare.case": 10}
    assert all(sum(1 for v in s["classes"].values() if v) >= 2 for s in idx["shards"])  # seeded shuffle mixes
    one = _samples(tmp_path / "data/export/synthetic")[0]
    per_sample = sum(len(one[k]) for k in ("cls", "json", "npy", "png"))
    idx = json.loads((export(export_cfg(tmp_path, **{"shard_size.samples": 100, "shard_size.bytes": 3 * per_sample}))
                      / "index.json").read_text())
    assert len(idx["shards"]) >= 8 and max(s["samples"] for s in idx["shards"]) <= 4
    assert sum(s["samples"] for s in idx["shards"]) == 30


def test_outside_contract_check_passes(tmp_path):
    if CHECK_CONTRACTS is None:
        pytest.skip("shared/tools/check_contracts.py not present")
    build_audited(tmp_path, n=12)
    out = export(export_cfg(tmp_path, **{"shard_size.samples": 5, "format": "dicom+nifti"}))
    r = subprocess.run([sys.executable, str(CHECK_CONTRACTS), "export", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "read 12 samples from 3 shards" in r.stdout


def test_bad_inputs_name_the_file(tmp_path):
    build_audited(tmp_path, n=6, passed=False)
    with pytest.raises(InputError, match="cohort.json.*privacy gate did not pass"):
        export(export_cfg(tmp_path))
    assert not (tmp_path / "data/export/synthetic").exists()
    build_audited(tmp_path, n=6)
    meta = json.loads((tmp_path / "data/audited/cohort.json").read_text())
    del meta["privacy"]
    (tmp_path / "data/audited/cohort.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="no privacy summary"):
        export(export_cfg(tmp_path))
    build_audited(tmp_path, n=6)
    a = _audited(tmp_path)
    a["index"][1] = a["index"][0]
    np.savez(tmp_path / "data/audited/cohort.npz", **a)
    with pytest.raises(InputError, match="cohort.npz: index has duplicate"):
        export(export_cfg(tmp_path))
    a = _audited(build_audited(tmp_path, n=6))
    a["images"] = a["images"].astype(np.float32)
    np.savez(tmp_path / "data/audited/cohort.npz", **a)
    with pytest.raises(InputError, match="uint8\\|uint16"):
        export(export_cfg(tmp_path))
    with pytest.raises(InputError, match="missing"):
        export(export_cfg(tmp_path / "nowhere"))
    build_audited(tmp_path, n=6)
    with pytest.raises(ConfigError, match="export.name"):
        export(export_cfg(tmp_path, name="my.export"))


def test_format_parsing():
    assert parse_formats("webdataset") == ["webdataset"]
    assert parse_formats("nifti+dicom") == ["webdataset", "dicom", "nifti"]
    assert parse_formats(["dicom"]) == ["webdataset", "dicom"]
    with pytest.raises(ConfigError, match="export.format"):
        parse_formats("hdf5")


def test_fast_json_template_matches_reference_serialisation():
    from synthgen.export.encode import SampleJson, sample_json

    base = {"generator": 'g"x', "model_target": "m", "synthgen_version": "0.1.0", "checkpoint_sha256": "0" * 64,
            "config_hash": "abc"}
    names = ["normal", "rare.case", "ü-class"]
    fast = SampleJson(base, names, ["nn", "auc"])
    rng = np.random.default_rng(0)
    for i in range(300):
        label = int(rng.integers(0, 3))
        scores = (rng.random(2) * 10.0 ** rng.integers(-9, 9, size=2)).astype(np.float32)
        if i == 3:
            scores[0] = np.nan
        text = fast(label, 7 * i, i, scores)
        assert text == sample_json(base, names[label], label, 7 * i, i, {"auc": scores[0], "nn": scores[1]})
        meta = json.loads(text)
        assert meta["index"] == i and meta["class_name"] == names[label] and meta["synthetic"] is True
