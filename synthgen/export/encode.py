"""Per-sample encoders for the shards: exact ``npy``, 8-bit ``png`` preview, ``cls``, ``json``.

All encoders are pure functions of the sample, so shards are byte-identical across runs. The PNG encoder
is written out (signature + IHDR + one zlib IDAT + IEND, filter type 0) because PIL's per-image overhead
dominated at MedMNIST sizes; ``benchmarks/run.py --cases export`` compares the two and
``tests/test_export_shards.py`` checks that PIL decodes ours to the same pixels.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zlib
from typing import Any, Mapping, Sequence

import numpy as np

try:  # ISA-L's deflate: 2-4x faster than zlib at equal or smaller output (benchmarks/cases/export.py)
    from isal import isal_zlib as _deflate

    DEFLATE_MAX_LEVEL = 3
except ImportError:  # pragma: no cover - isal is a dependency; plain zlib keeps exports possible without it
    _deflate = zlib
    DEFLATE_MAX_LEVEL = 9

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
#: the members of every sample, sorted
EXTENSIONS = ("cls", "json", "npy", "png")
#: the members of every sample of a 3D export (``(C, D, H, W)`` samples add their NIfTI volume)
EXTENSIONS_3D = ("cls", "json", "nii.gz", "npy", "png")


def extensions(sample_ndim: int) -> tuple[str, ...]:
    """The member extensions of a ``(C, H, W)`` (ndim 3) or ``(C, D, H, W)`` (ndim 4) sample."""
    return EXTENSIONS_3D if sample_ndim == 4 else EXTENSIONS


def slug(text: str) -> str:
    """A dot-free, filename-safe version of ``text`` (lowercase; runs of other characters -> ``_``)."""
    s = re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")
    return s or "class"


def sample_key(name: str, class_name: str, index: int) -> str:
    """``<name>-<class slug>-<index:07d>``: unique (``index`` is unique) and without dots."""
    return f"{name}-{slug(class_name)}-{int(index):07d}"


class NpyEncoder:
    """``.npy`` bytes of ``(C, H, W)`` arrays sharing one shape and dtype (header computed once).

    The result is byte-identical to ``np.save`` of the same array.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.zeros(shape, dtype=dtype), allow_pickle=False)
        self.header = buf.getvalue()[: len(buf.getvalue()) - int(np.prod(shape)) * np.dtype(dtype).itemsize]
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def __call__(self, image: np.ndarray) -> bytes:
        if image.shape != self.shape or image.dtype != self.dtype:
            raise ValueError(f"expected {self.shape} {self.dtype}, got {image.shape} {image.dtype}")
        return self.header + np.ascontiguousarray(image).tobytes()


def preview_8bit(image: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` uint8|uint16 -> ``(H, W)`` (C=1), ``(H, W, 3)`` (C=3) or ``(H, C*W)`` uint8.

    uint16 is mapped linearly to 8 bits (``round(x / 257)``, full range, no windowing); other channel
    counts are laid side by side as one grey image.
    """
    x = image
    if x.dtype == np.uint16:
        # round(v * 255 / 65535) == (v + 128) // 257 == ((v + 128) * 65281) >> 24 for every uint16 v
        # (65281 * 257 = 2**24 + 1; checked exhaustively in tests); multiply-shift vectorizes, division does not
        x = (((x.astype(np.uint32) + 128) * 65281) >> 24).astype(np.uint8)
    elif x.dtype != np.uint8:
        raise ValueError(f"preview needs uint8 or uint16, got {x.dtype}")
    c = x.shape[0]
    if c == 1:
        return x[0]
    if c == 3:
        return np.ascontiguousarray(x.transpose(1, 2, 0))
    return np.concatenate(list(x), axis=1)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray, level: int = 1) -> bytes:
    """8-bit PNG of ``(H, W)`` grey or ``(H, W, 3)`` RGB uint8 (deterministic).

    Every row uses PNG filter type 2 ("Up": difference to the row above, computed with numpy), then one
    zlib stream from ISA-L (``isal``; ``level`` clipped to its 0-3) or zlib if isal is missing. On smooth
    medical images Up + level 1 is both smaller and several times faster than no filter at level 6, and
    ISA-L is 2-4x faster than zlib (``benchmarks/cases/export.py`` measures the encoders). The bytes
    depend on the deflate library version; a given environment always writes the same bytes.
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"encode_png needs (H, W) or (H, W, 3) uint8, got {pixels.shape} {pixels.dtype}")
    h, w = pixels.shape[:2]
    color_type = 0 if pixels.ndim == 2 else 2
    rows = np.ascontiguousarray(pixels).reshape(h, -1)
    raw = np.empty((h, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 0] = 2  # filter type Up
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])  # modulo 256, as PNG defines it
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (_PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", _deflate.compress(raw.tobytes(), min(level, DEFLATE_MAX_LEVEL)))
            + _chunk(b"IEND", b""))


def json_float(v: float) -> float | None:
    """A float32 score as the shortest decimal that round-trips (``0.1`` not ``0.100000001``); NaN/inf -> None."""
    f = float(np.float32(v))
    if not math.isfinite(f):
        return None
    return float(str(np.float32(v)))


def sample_json(base: Mapping[str, Any], class_name: str, label: int, seed: int, index: int,
                scores: Mapping[str, float], curation: Mapping[str, float] | None = None) -> bytes:
    """The per-sample ``json`` member: the provenance in ``base`` plus this sample's own fields, its privacy
    ``scores`` and (when given: a cohort that went through the curate stage) its ``curation`` scores
    (sorted keys, compact separators; the reference implementation of :class:`SampleJson`)."""
    meta = dict(base)
    meta.update({"class_name": class_name, "label": int(label), "seed": int(seed), "index": int(index),
                 "synthetic": True, "privacy": {k: json_float(v) for k, v in scores.items()}})
    if curation is not None:
        meta["curation"] = {k: json_float(v) for k, v in curation.items()}
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _score_text(v: float) -> str:
    f = json_float(v)
    return "null" if f is None else repr(f)


class SampleJson:
    """Fast :func:`sample_json`: the text of each class is serialized once with marker values, and per
    sample only the seed, index and scores are filled in (byte-identical to :func:`sample_json`)."""

    _MARKS = {"index": -7_770_001, "seed": -7_770_002}

    def __init__(self, base: Mapping[str, Any], class_names: list[str], score_names: list[str],
                 curation_names: list[str] | None = None):
        self.score_names = sorted(score_names)
        self.curation_names = None if curation_names is None else sorted(curation_names)
        self.templates = []
        for label, c in enumerate(class_names):
            meta = dict(base)
            meta.update({"class_name": c, "label": label, "synthetic": True, "privacy": "\x00P", **self._MARKS})
            if self.curation_names is not None:
                meta["curation"] = "\x00C"
            text = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False)
            marks = {str(v): k for k, v in self._MARKS.items()}
            marks['"\\u0000P"'] = "privacy"
            marks['"\\u0000C"'] = "curation"
            pieces, order, rest = [], [], text
            while True:
                hits = [(rest.find(m), m) for m in marks if rest.find(m) >= 0]
                if not hits:
                    break
                pos, m = min(hits)
                pieces.append(rest[:pos])
                order.append(marks[m])
                rest = rest[pos + len(m):]
            pieces.append(rest)
            self.templates.append((pieces, order))

    def __call__(self, label: int, seed: int, index: int, scores: Sequence[float],
                 curation: Sequence[float] = ()) -> bytes:
        """``scores`` in the order of ``sorted(score_names)``, ``curation`` in that of ``sorted(curation_names)``."""
        pieces, order = self.templates[label]
        privacy = "{" + ",".join(f'"{k}":{_score_text(v)}' for k, v in zip(self.score_names, scores)) + "}"
        values = {"index": str(int(index)), "seed": str(int(seed)), "privacy": privacy}
        if self.curation_names is not None:
            values["curation"] = "{" + ",".join(f'"{k}":{_score_text(v)}'
                                                for k, v in zip(self.curation_names, curation)) + "}"
        out = [pieces[0]]
        for name, piece in zip(order, pieces[1:]):
            out += [values[name], piece]
        return "".join(out).encode("utf-8")


def provenance(cohort: Any) -> dict[str, Any]:
    """The fields every sample's ``json`` repeats: the generator's identity (from an ``AuditedCohort``)."""
    return {"generator": cohort.generator, "model_target": cohort.model_target,
            "synthgen_version": cohort.synthgen_version, "checkpoint_sha256": cohort.checkpoint_sha256,
            "config_hash": cohort.config_hash}
