"""Export benchmark: shard writing throughput vs a plain tarfile of the same bytes (and vs webdataset's
ShardWriter writing the same encoded samples), the PNG preview encoder vs PIL, and ``synthgen verify`` time
on a 10k-sample export vs plain webdataset reading the same shards.

All timings are CPU seconds of the benchmark process (see :func:`time_call`).

Images: MedMNIST training images from ``ctx.shared_data`` (pneumoniamnist 28x28 grey, bloodmnist 28x28 RGB,
and pneumoniamnist upsampled to 128x128 uint16 as a 16-bit stand-in), repeated to the sample count; seeded
smooth random images when the files are absent. Figures are ratios to references measured in the same run.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import Context, Row, Timing

CASE = "export"


def time_call(fn, warmup: int = 1, repeats: int = 3, device: str = "cpu") -> Timing:
    """Like ``harness.time_call`` but in CPU seconds of this process (``time.process_time``).

    Everything measured here is single-threaded CPU work; on a machine shared with other jobs, wall time
    mostly measures the neighbours, CPU time measures the code.
    """
    import gc

    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.process_time()
        fn()
        samples.append(time.process_time() - t0)
    return Timing(samples)


def _images(shared: str, n: int, shape: tuple[int, int, int], dtype: str, seed: int = 0) -> tuple[np.ndarray, str]:
    """``(n, C, H, W)`` images of ``dtype`` and where they came from."""
    c, h, _ = shape
    p = Path(shared) / ("bloodmnist.npz" if c == 3 else "pneumoniamnist_imbalanced.npz")
    if p.exists():
        with np.load(p) as z:
            x = z["train_images"]
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        x = np.resize(x, (n, *x.shape[1:]))
        if h != x.shape[-1] or dtype != "uint8":
            import torch
            import torch.nn.functional as F

            t = F.interpolate(torch.from_numpy(x.astype(np.float32) / 255), size=(h, h), mode="bilinear")
            x = np.rint(t.clamp(0, 1).numpy() * np.iinfo(dtype).max).astype(dtype)
        return x, p.name
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    base = rng.integers(0, top // 2, size=(n, *shape), dtype=np.int64)
    return ((base + np.roll(base, 1, axis=-1)) // 2).astype(dtype), "random (shared data absent)"


def _cohort(shared: str, n: int, shape: tuple[int, int, int], dtype: str, seed: int = 0):
    from synthgen.export.audited import AuditedCohort

    rng = np.random.default_rng(seed)
    images, _ = _images(shared, n, shape, dtype, seed)
    labels = np.arange(n, dtype=np.int64) % 4
    meta = {"generator": "bench", "model_target": "bench.Model", "checkpoint_sha256": "0" * 64,
            "config_hash": "bench", "synthgen_version": "0.1.0", "class_names": ["a", "b", "c", "d"],
            "privacy": {"passed": True}}
    return AuditedCohort(images=images, labels=labels, seeds=np.arange(n, dtype=np.int64),
                         index=np.arange(n, dtype=np.int64),
                         privacy={"nn_distance": rng.random(n).astype(np.float32)}, meta=meta)


def _members(shards: list[Path]) -> list[list[tuple[str, bytes]]]:
    out = []
    for p in shards:
        with tarfile.open(p) as tf:
            out.append([(m.name, tf.extractfile(m).read()) for m in tf.getmembers()])
    return out


def _plain_tar(members: list[list[tuple[str, bytes]]], folder: Path) -> list[Path]:
    """The reference: the same member bytes written with tarfile alone (same names and metadata, so the
    files are byte-identical to the shards)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, shard in enumerate(members):
        paths.append(folder / f"plain-{i:06d}.tar")
        with tarfile.open(paths[-1], "w", format=tarfile.USTAR_FORMAT) as tf:
            for name, data in shard:
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(data), 0, 0o444, "bigdata", "bigdata"
                tf.addfile(ti, io.BytesIO(data))
    return paths


def throughput(ctx: Context, n: int, shape, dtype: str, label: str, repeats: int, png_level: int = 1,
               reference: bool = True) -> list[Row]:
    from synthgen.export.index import build_index
    from synthgen.export.shard_writer import write_shards

    work = Path(ctx.workdir) / f"export_{label}"
    cohort = _cohort(ctx.shared_data, n, shape, dtype)
    source = _images(ctx.shared_data, 1, shape, dtype)[1]

    def ours():
        shutil.rmtree(work / "ours", ignore_errors=True)
        (work / "ours").mkdir(parents=True)
        shards = write_shards(cohort, work / "ours", "bench", max_samples=1000, max_bytes=None, png_level=png_level)
        (work / "ours" / "index.json").write_text(json.dumps(build_index(cohort, "bench", ["webdataset"], shards, [])))

    t_ours = time_call(ours, warmup=1, repeats=repeats)
    shard_paths = sorted((work / "ours").glob("*.tar"))
    mb = sum(p.stat().st_size for p in shard_paths) / 1e6
    note = f"{n} samples {shape} {dtype} from {source}, {mb:.1f} MB in {len(shard_paths)} shards"
    ours_row = Row(CASE, f"synthgen export {label} png{png_level}", "write MB/s (CPU)", mb / t_ours.median, "MB/s",
                   t_ours.spread, reference=f"plain tarfile {label}",
                   note="encode npy/png/json + ShardTarWriter (ShardWriter's bytes) + sha256 index; " + note)
    if not reference:
        return [ours_row]
    members = _members(shard_paths)
    plain_paths: list[Path] = []

    def plain():
        shutil.rmtree(work / "plain", ignore_errors=True)
        plain_paths[:] = _plain_tar(members, work / "plain")

    t_plain = time_call(plain, warmup=1, repeats=repeats)
    assert [p.read_bytes() for p in plain_paths] == [p.read_bytes() for p in shard_paths], "not the same bytes"
    rows = [Row(CASE, f"plain tarfile {label}", "write MB/s (CPU)", mb / t_plain.median, "MB/s", t_plain.spread,
                note="tarfile.addfile of the same members; byte-identical files; " + note)]
    import webdataset as wds

    samples = [_as_sample(shard) for shard in members]

    def shardwriter():
        shutil.rmtree(work / "wds", ignore_errors=True)
        (work / "wds").mkdir(parents=True)
        with wds.ShardWriter(str(work / "wds" / "w-%06d.tar"), maxcount=1000, verbose=0, encoder=False,
                             mtime=0) as w:
            for shard in samples:
                for sample in shard:
                    w.write(sample)

    t_wds = time_call(shardwriter, warmup=1, repeats=repeats)
    assert [p.read_bytes() for p in sorted((work / "wds").glob("*.tar"))] == [p.read_bytes() for p in shard_paths]
    rows.append(Row(CASE, f"webdataset ShardWriter {label}", "write MB/s (CPU)", mb / t_wds.median, "MB/s",
                    t_wds.spread, reference=f"plain tarfile {label}",
                    note="ShardWriter(encoder=False, mtime=0) of the same encoded samples; byte-identical files"))
    return rows + [ours_row]


def _as_sample(members: list[tuple[str, bytes]]) -> list[dict]:
    """Tar members ``key.ext`` (grouped by key, in order) -> webdataset sample dicts."""
    out: list[dict] = []
    for name, data in members:
        key, ext = name.split(".", 1)
        if not out or out[-1]["__key__"] != key:
            out.append({"__key__": key})
        out[-1][ext] = data
    return out


def png_encoders(ctx: Context, repeats: int) -> list[Row]:
    """PIL's PNG writer vs ours (Up filter + ISA-L) vs ours with zlib, on the 8-bit previews."""
    import zlib

    from PIL import Image

    from synthgen.export import encode

    rows = []
    for shape, dtype, label in (((1, 28, 28), "uint8", "28x28"), ((1, 128, 128), "uint16", "128x128")):
        x, _ = _images(ctx.shared_data, 1000 if shape[-1] == 28 else 200, shape, dtype)
        previews = [encode.preview_8bit(a) for a in x]

        def pil():
            return [len(_pil_png(Image, p)) for p in previews]

        def ours():
            return [len(encode.encode_png(p, 1)) for p in previews]

        def ours_zlib():
            saved = encode._deflate, encode.DEFLATE_MAX_LEVEL
            encode._deflate, encode.DEFLATE_MAX_LEVEL = zlib, 9
            try:
                return [len(encode.encode_png(p, 1)) for p in previews]
            finally:
                encode._deflate, encode.DEFLATE_MAX_LEVEL = saved

        us = 1e6 / len(previews)
        ref = f"PIL Image.save {label}"
        for name, fn in ((ref, pil), (f"Up + ISA-L level 1 {label}", ours), (f"Up + zlib level 1 {label}", ours_zlib)):
            t = time_call(fn, repeats=repeats)
            size = float(np.mean(fn()))
            rows.append(Row(CASE, name, "png encode (CPU)", t.median * us, "us/image", t.spread, better="lower",
                            reference=None if name == ref else ref, note=f"mean {size:.0f} bytes/image"))
    return rows


def _pil_png(Image, p: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(p).save(buf, format="PNG")
    return buf.getvalue()


def verify_time(ctx: Context, n: int, repeats: int) -> list[Row]:
    import webdataset as wds

    from synthgen.export.card import render_card
    from synthgen.export.index import build_index
    from synthgen.export.shard_writer import write_shards
    from synthgen.export.verify import verify_export

    work = Path(ctx.workdir) / "verify"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cohort = _cohort(ctx.shared_data, n, (1, 28, 28), "uint8")
    shards = write_shards(cohort, work, "bench", max_samples=1000, max_bytes=None)
    index = build_index(cohort, "bench", ["webdataset"], shards, [])
    (work / "index.json").write_text(json.dumps(index))
    (work / "README.md").write_text(render_card(cohort, index, {}))
    urls = [str(work / s["path"]) for s in shards]

    def plain():
        k = sum(1 for s in wds.WebDataset(urls, shardshuffle=False) if np.load(io.BytesIO(s["npy"])) is not None)
        assert k == n

    def full():
        problems, stats = verify_export(work)
        assert not problems and stats["samples"] == n

    def quick():
        assert not verify_export(work, decode=False)[0]

    t_plain = time_call(plain, repeats=repeats)
    t_full, t_quick = time_call(full, repeats=repeats), time_call(quick, repeats=repeats)
    note = f"{n} samples (1, 28, 28) uint8 in {len(shards)} shards"
    return [Row(CASE, "plain webdataset read + np.load", "verify CPU s", t_plain.median, "s", t_plain.spread,
                better="lower", note=note),
            Row(CASE, "synthgen verify", "verify CPU s", t_full.median, "s", t_full.spread,
                reference="plain webdataset read + np.load", better="lower",
                note="sha256 + sizes + counts + npy/cls/json checks + PNG decode; " + note),
            Row(CASE, "synthgen verify --no-decode", "verify CPU s", t_quick.median, "s", t_quick.spread,
                reference="plain webdataset read + np.load", better="lower")]


def run(ctx: Context) -> list[Row]:
    n = 2000 if ctx.quick else 10000
    repeats = 1 if ctx.quick else 3
    rows = []
    rows += throughput(ctx, n, (1, 28, 28), "uint8", "28x28 grey", repeats)
    rows += throughput(ctx, n, (3, 28, 28), "uint8", "28x28 RGB", repeats)
    rows += throughput(ctx, max(n // 10, 200), (1, 128, 128), "uint16", "128x128 uint16", repeats)
    rows += throughput(ctx, max(n // 10, 200), (1, 128, 128), "uint16", "128x128 uint16", repeats, png_level=6,
                       reference=False)
    rows += png_encoders(ctx, repeats)
    rows += verify_time(ctx, n, repeats)
    return rows
