"""ShardTarWriter writes exactly the bytes of webdataset.ShardWriter(encoder=False, mtime=0): same shard split
(by count and by payload size), headers, padding and end-of-archive records, PAX headers for long names."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import webdataset as wds

from synthgen.export.tarwriter import ShardTarWriter, member_header


def _samples(n: int, seed: int = 0, long_names: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        key = (f"a-{'x' * 120}-{i:07d}" if long_names and i % 3 == 0 else f"synthetic-class_{i % 3}-{i:07d}")
        out.append({"__key__": key, "npy": rng.bytes(int(rng.integers(0, 3000))), "cls": str(i % 3).encode(),
                    "json": b'{"i":%d}' % i, "png": rng.bytes(int(rng.choice([0, 511, 512, 513, 1024])))})
    return out


def _write(writer_cls, tmp, samples, **kw) -> dict[str, bytes]:
    files: dict[str, io.BytesIO] = {}
    closed: list[str] = []

    class Keep(io.BytesIO):
        def close(self):  # keep the bytes after the writer closes the file
            files[self.name] = self.getvalue()

    def opener(fname):
        f = Keep()
        f.name = fname
        return f

    if writer_cls is wds.ShardWriter:
        w = wds.ShardWriter(str(tmp / "s-%06d.tar"), post=closed.append, opener=opener, verbose=0, encoder=False,
                            mtime=0, **kw)
    else:
        w = ShardTarWriter(str(tmp / "s-%06d.tar"), post=closed.append, opener=opener, **kw)
    landed = []
    for s in samples:
        w.write(s)
        landed.append(w.fname)
    w.close()
    assert closed == sorted(files)
    return {"files": files, "landed": landed}


@pytest.mark.parametrize("kw", [dict(maxcount=4, maxsize=1e18), dict(maxcount=1000, maxsize=5000),
                                dict(maxcount=1, maxsize=1e18), dict(maxcount=1000, maxsize=1e18)])
def test_bytes_and_shard_split_equal_webdataset_shardwriter(tmp_path, kw):
    samples = _samples(23)
    ours, ref = _write(ShardTarWriter, tmp_path, samples, **kw), _write(wds.ShardWriter, tmp_path, samples, **kw)
    assert ours["landed"] == ref["landed"]
    assert list(ours["files"]) == list(ref["files"]) and len(ref["files"]) >= (1 if kw["maxcount"] == 1000 and kw["maxsize"] > 1e9 else 3)
    for name, data in ref["files"].items():
        assert ours["files"][name] == data, name
        assert len(data) % tarfile.RECORDSIZE == 0


def test_long_names_fall_back_to_pax_headers_identically(tmp_path):
    samples = _samples(7, long_names=True)
    ours = _write(ShardTarWriter, tmp_path, samples, maxcount=100, maxsize=1e18)["files"]
    ref = _write(wds.ShardWriter, tmp_path, samples, maxcount=100, maxsize=1e18)["files"]
    assert ours == ref
    with tarfile.open(fileobj=io.BytesIO(ours["" + next(iter(ours))])) as tf:
        names = tf.getnames()
    assert any(len(n) > 100 for n in names) and len(names) == 7 * 4


def test_empty_writer_matches_and_bad_samples_are_refused(tmp_path):
    assert _write(ShardTarWriter, tmp_path, [], maxcount=5, maxsize=1e18) == \
        _write(wds.ShardWriter, tmp_path, [], maxcount=5, maxsize=1e18)
    w = ShardTarWriter(str(tmp_path / "e-%06d.tar"), 5, 1e18, opener=lambda f: io.BytesIO())
    with pytest.raises(ValueError, match="__key__"):
        w.write({"npy": b"x"})
    with pytest.raises(ValueError, match="k.cls: expected bytes"):
        w.write({"__key__": "k", "cls": 3})


def test_member_header_equals_tarfile_for_many_sizes():
    for size in (0, 1, 511, 512, 513, 10**6, 8**11 - 1, 8**11):
        ti = tarfile.TarInfo("synthetic-normal-0000042.npy")
        ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = size, 0, 0o444, "bigdata", "bigdata"
        assert member_header(ti.name, size) == ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), size
