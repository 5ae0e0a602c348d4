"""Consumer side: plain webdataset without synthgen, and the synthgen.shards training pipeline."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from export_fixture import build_audited, export_cfg, run_without_synthgen
from synthgen.stages.export import export
from synthgen.shards import decode_sample, expand_urls, synthetic_pipeline


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("consumer")
    build_audited(root, n=40, size=6)
    return export(export_cfg(root, **{"shard_size.samples": 5}))  # 8 shards


@pytest.fixture(scope="module")
def truth(shards) -> dict[str, tuple[np.ndarray, int]]:
    return {s["__key__"]: (np.load(io.BytesIO(s["npy"])), int(s["cls"]))
            for s in wds.WebDataset(sorted(map(str, shards.glob("*.tar"))), shardshuffle=False)}


def test_plain_webdataset_reads_shards_without_synthgen(shards):
    code = (
        "import io, json, numpy as np, webdataset as wds\n"
        "ds = wds.WebDataset('synthetic-{000000..000007}.tar', shardshuffle=False)\n"
        "rows = [(s['__key__'], np.load(io.BytesIO(s['npy'])).shape, int(s['cls']), json.loads(s['json'])['synthetic'])"
        " for s in ds]\n"
        "assert len(rows) == 40 and len({r[0] for r in rows}) == 40 and all(r[3] is True for r in rows)\n"
        "assert 'synthgen' not in sys.modules\n"
        "print('ok', rows[0][1])\n")
    r = run_without_synthgen(code, cwd=shards)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok (1, 6, 6)" in r.stdout


def test_pipeline_decodes_every_sample_once_to_unit_floats(shards, truth):
    seen = {}
    for b in synthetic_pipeline(shards, batch_size=7, shuffle=16, seed=3):
        assert b["image"].dtype == torch.float32 and b["label"].dtype == torch.int64
        assert b["image"].shape[1:] == (1, 6, 6) and bool(b["synthetic"].all())
        for k, x, y in zip(b["__key__"], b["image"], b["label"]):
            seen[k] = (x, int(y))
    assert seen.keys() == truth.keys()
    for k, (x, y) in seen.items():
        assert y == truth[k][1]
        assert torch.equal(x, torch.from_numpy(truth[k][0].astype(np.float32) / 255))
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def _order(ds) -> list[str]:
    return [s["__key__"] for s in ds]


def test_shuffle_is_seeded_and_changes_with_epoch(shards):
    a = synthetic_pipeline(shards, shuffle=10, seed=1)
    first = _order(a)
    assert first == _order(synthetic_pipeline(shards, shuffle=10, seed=1))
    assert first != _order(synthetic_pipeline(shards, shuffle=10, seed=2))
    a.set_epoch(1)
    second = _order(a)
    assert second != first and sorted(second) == sorted(first)
    plain = _order(synthetic_pipeline(shards, shuffle=0))  # shuffle=0: file order
    assert plain == [s["__key__"] for s in wds.WebDataset(expand_urls(shards), shardshuffle=False)]


def test_split_by_node_gives_ranks_disjoint_shards(shards, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    parts = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        parts.append(set(_order(synthetic_pipeline(shards, shuffle=8, seed=5))))
    assert not parts[0] & parts[1] and len(parts[0] | parts[1]) == 40 and len(parts[0]) == 20


def test_dataloader_workers_split_shards(shards):
    ds = synthetic_pipeline(shards, shuffle=8, batch_size=4)
    keys = [k for b in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2) for k in b["__key__"]]
    assert len(keys) == 40 and len(set(keys)) == 40


def _real_shards(root: Path, n: int = 12) -> str:
    """A real-data WebDataset as a user would have it: png + cls (no npy)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(root / "real-0000.tar"), encoder=False, mtime=0) as w:
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(np.full((6, 6), 255, dtype=np.uint8)).save(buf, format="PNG")
            w.write({"__key__": f"real/{i:04d}", "png": buf.getvalue(), "cls": b"1"})
    return str(root / "real-0000.tar")


def test_mixing_with_real_data_at_a_ratio(shards, tmp_path):
    real = _real_shards(tmp_path)
    ds = synthetic_pipeline(shards, shuffle=8, seed=0, real_urls=real, real_fraction=0.4)
    out = list(ds)
    n_real = sum(not s["synthetic"] for s in out)
    assert sum(s["synthetic"] for s in out) == 40                   # synthetic stream defines the epoch
    assert 0.25 < n_real / len(out) < 0.55                           # ~0.4, real stream cycles
    assert all(float(s["image"].min()) == 1.0 and int(s["label"]) == 1 for s in out if not s["synthetic"])
    assert [s["__key__"] for s in out] == [s["__key__"] for s in
                                           synthetic_pipeline(shards, shuffle=8, seed=0, real_urls=real,
                                                              real_fraction=0.4)]
    with pytest.raises(ValueError, match="real_urls"):
        synthetic_pipeline(shards, real_fraction=0.2)


def test_urls_pipe_brace_and_s3_forms(shards):
    pattern = str(shards / "synthetic-{000000..000007}.tar")
    assert expand_urls(pattern) == expand_urls(shards) == expand_urls([str(p) for p in sorted(shards.glob("*.tar"))])
    assert expand_urls("s3://bucket/x-{0..1}.tar") == ["pipe:aws s3 cp s3://bucket/x-0.tar -",
                                                       "pipe:aws s3 cp s3://bucket/x-1.tar -"]
    piped = [f"pipe:cat {u}" for u in expand_urls(pattern)]
    assert len(_order(synthetic_pipeline(piped, shuffle=0))) == 40


def test_decode_sample_handles_16_bit_npy_and_png():
    x = np.array([[[0, 65535]]], dtype=np.uint16)
    buf = io.BytesIO()
    np.save(buf, x)
    s = decode_sample({"__key__": "k", "npy": buf.getvalue(), "cls": b"2", "json": json.dumps({}).encode()})
    assert s["image"].tolist() == [[[0.0, 1.0]]] and int(s["label"]) == 2
    with pytest.raises(ValueError, match="no npy or image"):
        decode_sample({"__key__": "k", "cls": b"0"})
