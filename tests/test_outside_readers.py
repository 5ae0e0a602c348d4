"""Outside readers (issue 16 item 8): Hugging Face ``datasets`` and ``wids`` read an export as the README
documents, sample for sample the same as plain ``webdataset``. Skipped only when a reader is not installed
(``pip install -e ".[dev]"`` installs both; .ci/run does)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from export_fixture import build_audited, export_cfg

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # a local export: never ask the Hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    from synthgen.stages.export import export

    root = build_audited(tmp_path_factory.mktemp("readers"), n=30, channels=3, size=8)
    return Path(export(export_cfg(root)))


def _plain(export_dir: Path) -> dict[str, dict]:
    """key -> {npy, cls, json} as plain webdataset reads them (the reference)."""
    import webdataset as wds

    out = {}
    for s in wds.WebDataset(sorted(str(p) for p in export_dir.glob("*.tar")), shardshuffle=False):
        out[s["__key__"]] = {"npy": np.load(io.BytesIO(s["npy"])), "cls": int(s["cls"]), "json": json.loads(s["json"])}
    return out


def test_hugging_face_datasets_reads_the_export(export_dir, tmp_path):
    datasets = pytest.importorskip("datasets")
    ref = _plain(export_dir)
    files = sorted(str(p) for p in export_dir.glob("*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "a"))
    assert len(ds) == len(ref) == 30 and {"npy", "png", "cls", "json"} <= set(ds.column_names)
    inner = ds.features["npy"]
    while hasattr(inner, "feature"):  # List(List(List(Value)))
        inner = inner.feature
    assert inner.dtype == "uint8"  # the stored dtype, exact intensities
    for row in ds:
        want = ref[row["__key__"]]
        assert np.array_equal(np.asarray(row["npy"]), want["npy"])
        assert row["cls"] == want["cls"] and row["json"]["synthetic"] is True
        assert row["json"]["class_name"] == want["json"]["class_name"]
        assert row["png"].size == want["npy"].shape[:0:-1]  # PIL (W, H) of a (C, H, W) sample
    # The dataset card's YAML header declares the shards, so the folder itself loads too (as on the Hub).
    folder = datasets.load_dataset(str(export_dir), split="train", cache_dir=str(tmp_path / "b"))
    assert sorted(folder["__key__"]) == sorted(ref)


def test_wids_reads_the_index_as_an_indexed_dataset(export_dir, tmp_path):
    wids = pytest.importorskip("wids")
    ref = _plain(export_dir)
    index = json.loads((export_dir / "index.json").read_text())
    ds = wids.ShardListDataset(str(export_dir / "index.json"), cache_dir=str(tmp_path / "wids"))
    assert len(ds) == index["totals"]["samples"] == len(ref)
    seen = set()
    for i in range(len(ds)):
        s = ds[i]
        want = ref[s["__key__"]]
        assert np.array_equal(s[".npy"], want["npy"]) and s[".npy"].dtype == want["npy"].dtype
        assert int(s[".cls"]) == want["cls"] and s[".json"]["index"] == want["json"]["index"]
        seen.add(s["__key__"])
    assert seen == set(ref)  # random access reaches every sample exactly once
