"""A byte-level scanner for identifying strings in files, used by the no-PHI tests.

A plain ``grep`` misses most of the ways a string can hide in pipeline outputs, so :func:`find_strings`
looks at every file's bytes *and* at what its containers hold, recursively:

* gzip (``.nii.gz``), tar (WebDataset shards), zip (``.npz``) members;
* PNG text chunks (``tEXt``; ``zTXt`` and compressed ``iTXt`` are inflated);
* DICOM element values parsed with pydicom (covers deflated transfer syntaxes);

and it searches each blob for every needle in several encodings: UTF-8 / Latin-1 (text, JSON, DICOM),
UTF-16-LE and UTF-32-LE (numpy ``<U`` arrays store UTF-32), JSON ``\\uXXXX`` escapes, and each of these in
the original, upper and lower case, matched case-insensitively.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterable, Iterator

ENCODINGS = ("utf-8", "latin-1", "utf-16-le", "utf-32-le")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def needle_forms(s: str) -> set[bytes]:
    """Every byte form of ``s`` the scanner looks for (ASCII-lowercased, to match case-insensitively)."""
    out = set()
    for form in {s, s.upper(), s.lower()}:
        for enc in ENCODINGS:
            try:
                out.add(form.encode(enc).lower())
            except UnicodeEncodeError:
                pass
        out.add(json.dumps(form)[1:-1].encode("ascii").lower())  # "\u00d8" escapes (ensure_ascii)
    return out


def _png_texts(data: bytes) -> Iterator[bytes]:
    """The text payloads of a PNG's tEXt / zTXt / iTXt chunks (inflated where compressed)."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"tEXt":
            yield body
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            yield key + b"\0" + zlib.decompress(rest[1:])
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            lang, _, rest = rest.partition(b"\0")
            tkey, _, text = rest.partition(b"\0")
            yield b"\0".join([key, lang, tkey, zlib.decompress(text) if compressed else text])


def _dicom_values(data: bytes) -> bytes:
    """Every element value of a DICOM file (nested sequences included) as text, via pydicom."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    parts = [repr(el.value) for el in ds.iterall() if el.tag != 0x7FE00010]
    parts += [repr(el.value) for el in ds.file_meta.iterall()] if hasattr(ds, "file_meta") else []
    return "\n".join(parts).encode("utf-8")


def blobs(data: bytes, name: str, depth: int = 0) -> Iterator[tuple[str, bytes]]:
    """``(where, bytes)`` for ``data`` itself and, recursively, for everything its containers hold."""
    yield name, data
    if depth >= 4:
        return
    if data[:2] == b"\x1f\x8b":
        yield from blobs(gzip.decompress(data), f"{name}|gunzip", depth + 1)
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for m in zf.namelist():
                yield from blobs(zf.read(m), f"{name}|{m}", depth + 1)
    elif data[257:262] == b"ustar":
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            for m in tf:
                if m.isfile():
                    yield from blobs(tf.extractfile(m).read(), f"{name}|{m.name}", depth + 1)
    elif data[:8] == PNG_SIGNATURE:
        for i, text in enumerate(_png_texts(data)):
            yield f"{name}|text{i}", text
    elif data[128:132] == b"DICM":
        yield f"{name}|dicom-values", _dicom_values(data)


def find_strings(needles: Iterable[str], *roots: Path) -> list[str]:
    """``"<file>[|member]: <needle>"`` for every needle found anywhere under ``roots`` (files or folders)."""
    forms = {s: needle_forms(s) for s in needles}
    hits = set()
    for root in roots:
        root = Path(root)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            for where, blob in blobs(path.read_bytes(), str(path)):
                low = blob.lower()
                hits.update(f"{where}: {s!r}" for s, fs in forms.items() if any(f in low for f in fs))
    return sorted(hits)
