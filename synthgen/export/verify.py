"""``synthgen verify <export dir>``: check an export against its ``index.json``.

Checks: every listed shard exists with the listed byte size and sha256; no unlisted ``.tar`` (or unlisted
DICOM/NIfTI file) lies in the folder; every sample has exactly the listed extensions, a unique dot-free
key, a loadable ``npy`` of the listed shape and dtype, a ``cls`` in range that matches its ``json``
(``synthetic: true``), and (with ``decode``) a PNG preview of the right size; a volume's ``nii.gz`` holds
exactly its ``npy`` voxels with the listed spacing in a RAS affine; per-shard sample and class
counts and the totals match the index; the dataset card ``README.md`` exists.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .encode import KEY_PATTERN
from .index import INDEX_NAME

MEDICAL_DIRS = ("dicom", "nifti")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) per sample, grouping consecutive members by key (as webdataset does)."""
    key, sample = None, {}
    with tarfile.open(path, "r:") as tf:
        for m in tf:
            if not m.isfile():
                continue
            base = os.path.basename(m.name)
            if "." not in base:
                k, ext = m.name, ""
            else:
                dot = m.name.rfind("/") + 1 + base.index(".")
                k, ext = m.name[:dot], m.name[dot + 1:]
            if k != key and key is not None:
                yield key, sample
                sample = {}
            key = k
            sample[ext] = tf.extractfile(m).read()
    if key is not None:
        yield key, sample


def _check_sample(key: str, s: dict[str, bytes], idx: dict[str, Any], decode: bool) -> list[str]:
    problems = []
    names = idx["class_names"]
    if sorted(s) != sorted(idx["extensions"]):
        return [f"sample {key!r} has extensions {sorted(s)}, expected {sorted(idx['extensions'])}"]
    try:
        x = np.load(io.BytesIO(s["npy"]), allow_pickle=False)
        spec = idx["sample"]
        if list(x.shape) != list(spec["shape"]) or str(x.dtype) != spec["dtype"]:
            problems.append(f"sample {key!r} npy is {x.shape} {x.dtype}, index says {spec}")
        label = int(s["cls"].decode("ascii").strip())
        meta = json.loads(s["json"])
        if not 0 <= label < len(names):
            problems.append(f"sample {key!r} cls {label} outside 0..{len(names) - 1}")
        elif meta.get("class_name") != names[label] or meta.get("label") != label:
            problems.append(f"sample {key!r} json class {meta.get('class_name')!r} does not match cls {label}")
        if meta.get("synthetic") is not True:
            problems.append(f"sample {key!r} json lacks synthetic: true")
        if decode:
            from PIL import Image

            with Image.open(io.BytesIO(s["png"])) as im:
                im.load()
                if x.ndim == 4:
                    from .volume import preview_side

                    if im.size[::-1] != preview_side(x.shape):
                        problems.append(f"sample {key!r} png is {im.size}, expected the 3-plane preview of {x.shape}")
                elif im.size[1] != x.shape[-2]:
                    problems.append(f"sample {key!r} png is {im.size}, npy {x.shape}")
        if "nii.gz" in s:
            problems += _check_volume(key, s["nii.gz"], x, spec)
    except Exception as e:  # any decoding failure is a finding, not a crash
        problems.append(f"sample {key!r} unreadable: {type(e).__name__}: {e}")
    return problems


def _check_volume(key: str, data: bytes, x: np.ndarray, spec: dict[str, Any]) -> list[str]:
    """The ``nii.gz`` member holds the ``npy`` voxels exactly, with the index's spacing in a RAS affine."""
    from .volume import read_volume

    vol, affine = read_volume(data)
    problems = []
    if vol.shape != x.shape or vol.dtype != x.dtype or not np.array_equal(vol, x):
        problems.append(f"sample {key!r} nii.gz voxels ({vol.shape} {vol.dtype}) differ from its npy")
    spacing = spec.get("spacing")
    if spacing is None or not np.allclose(np.diag(affine)[:3], list(spacing)[::-1], rtol=1e-5) \
            or not np.allclose(affine[:3, :3], np.diag(np.diag(affine)[:3]), atol=1e-6):
        problems.append(f"sample {key!r} nii.gz affine {np.round(affine, 4).tolist()} is not the RAS diagonal of "
                        f"spacing {spacing}")
    return problems


def verify_export(export_dir: str | os.PathLike, decode: bool = True) -> tuple[list[str], dict[str, int]]:
    """Check an export folder; returns (problems, {"shards", "samples", "files"} checked)."""
    d = Path(export_dir)
    stats = {"shards": 0, "samples": 0, "files": 0}
    idx_p = d / INDEX_NAME
    if not idx_p.exists():
        return [f"{idx_p}: missing"], stats
    try:
        idx = json.loads(idx_p.read_text(encoding="utf-8"))
        shards, names = list(idx["shards"]), list(idx["class_names"])
        files, totals = list(idx.get("files", [])), dict(idx["totals"])
    except (ValueError, KeyError, TypeError) as e:
        return [f"{idx_p}: unreadable index ({type(e).__name__}: {e})"], stats
    problems: list[str] = []
    if not (d / "README.md").exists():
        problems.append(f"{d / 'README.md'}: dataset card missing")
    listed = {s.get("path") for s in shards}
    for p in sorted(d.rglob("*.tar")):
        if p.relative_to(d).as_posix() not in listed:
            problems.append(f"{p}: shard not listed in index.json")
    keys: set[str] = set()
    classes_total = dict.fromkeys(names, 0)
    for entry in shards:
        p = d / str(entry.get("path"))
        if not p.is_file():
            problems.append(f"{p}: listed shard missing")
            continue
        if p.stat().st_size != entry.get("bytes"):
            problems.append(f"{p}: {p.stat().st_size} bytes, index says {entry.get('bytes')}")
        if _sha256(p) != entry.get("sha256"):
            problems.append(f"{p}: sha256 mismatch")
        n, classes = 0, dict.fromkeys(names, 0)
        try:
            for key, s in _samples(p):
                n += 1
                if not KEY_PATTERN.match(os.path.basename(key)):
                    problems.append(f"{p}: sample key {key!r} is not [A-Za-z0-9_-]+")
                if key in keys:
                    problems.append(f"{p}: duplicate sample key {key!r}")
                keys.add(key)
                found = _check_sample(key, s, idx, decode)
                problems += [f"{p}: {f}" for f in found]
                if not found:
                    c = names[int(s["cls"])]
                    classes[c] += 1
        except (tarfile.TarError, OSError, EOFError) as e:
            problems.append(f"{p}: unreadable tar ({type(e).__name__}: {e})")
        if n != entry.get("samples"):
            problems.append(f"{p}: {n} samples, index says {entry.get('samples')}")
        if classes != entry.get("classes"):
            problems.append(f"{p}: class counts {classes}, index says {entry.get('classes')}")
        for c in names:
            classes_total[c] += classes[c]
        stats["shards"] += 1
        stats["samples"] += n
    if totals.get("shards") != len(shards):
        problems.append(f"{idx_p}: totals.shards {totals.get('shards')} but {len(shards)} shards listed")
    if totals.get("samples") != sum(s.get("samples", 0) for s in shards) or totals.get("samples") != len(keys):
        problems.append(f"{idx_p}: totals.samples {totals.get('samples')}, found {len(keys)} samples")
    if totals.get("classes") != classes_total:
        problems.append(f"{idx_p}: totals.classes {totals.get('classes')}, found {classes_total}")
    wids = [{"url": s.get("path"), "nsamples": s.get("samples"), "filesize": s.get("bytes")} for s in shards]
    if idx.get("shardlist", wids) != wids:
        problems.append(f"{idx_p}: shardlist (wids descriptor) does not match shards")
    problems += _verify_files(d, files)
    stats["files"] = len(files)
    return problems, stats


def _verify_files(d: Path, files: list[dict[str, Any]]) -> list[str]:
    problems = []
    listed = {f.get("path") for f in files}
    for sub in MEDICAL_DIRS:
        if (d / sub).is_dir():
            for p in sorted(q for q in (d / sub).rglob("*") if q.is_file()):
                if p.relative_to(d).as_posix() not in listed:
                    problems.append(f"{p}: file not listed in index.json")
    for f in files:
        p = d / str(f.get("path"))
        if not p.is_file():
            problems.append(f"{p}: listed file missing")
        elif p.stat().st_size != f.get("bytes") or _sha256(p) != f.get("sha256"):
            problems.append(f"{p}: size or sha256 does not match index.json")
    return problems


def main(export_dir: str, decode: bool = True) -> int:
    """CLI body: print problems (one per line) or a one-line summary; 0 = verified, 1 = mismatch."""
    problems, stats = verify_export(export_dir, decode=decode)
    for p in problems:
        print(f"problem: {p}")
    if problems:
        print(f"{export_dir}: {len(problems)} problem(s)")
        return 1
    print(f"{export_dir}: ok ({stats['samples']} samples in {stats['shards']} shards, {stats['files']} files)")
    return 0
