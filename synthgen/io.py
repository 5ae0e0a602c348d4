"""Atomic, byte-deterministic writers shared by every stage.

Every stage output must be identical across identical runs (otherwise DVC re-runs everything
downstream) and must never be left half-written (a killed run leaves either the old output or none).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import WriteError, is_disk_error

# A fixed timestamp for zip members: np.savez stamps the current time, which changes the bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and folders. On error the temporary is removed and ``path`` keeps its old content.
    A write the file system refuses (disk full, quota, read-only: :data:`synthgen.errors.DISK_ERRNOS`)
    becomes a one-line :class:`synthgen.errors.WriteError` naming ``path`` (a nested ``atomic_path``
    inside the temporary names its file under ``path``, not under the temporary).
    """
    path = Path(path)
    tmp = _tmp_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
    except OSError as e:
        if is_disk_error(e):
            raise WriteError(path, e) from None
        raise
    try:
        yield tmp
        if tmp.is_dir() and path.exists():
            # A folder cannot be replaced in one rename: move the old one aside first, then drop it.
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            _remove(old)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the previous content back
                raise
            _remove(old, quiet=True)
        else:
            os.replace(tmp, path)
    except WriteError as e:
        _remove(tmp, quiet=True)
        inner = Path(e.path)
        if inner == tmp or tmp in inner.parents:  # written inside our temporary: name the real place
            raise WriteError(path / inner.relative_to(tmp), e.err) from None
        raise
    except BaseException as e:
        _remove(tmp, quiet=True)
        if is_disk_error(e):
            raise WriteError(path, e) from None
        raise


def _remove(p: Path, quiet: bool = False) -> None:
    """Remove a file, link or folder if present (``quiet``: never raise, e.g. while handling an error)."""
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()
    except OSError:
        if not quiet:
            raise


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write an uncompressed ``.npz`` whose bytes depend only on the arrays (atomic).

    Readable with ``np.load(path, allow_pickle=False)``: object arrays are refused.
    """
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in sorted(arrays):
                arr = np.asarray(arrays[name])
                if arr.dtype == object:
                    raise TypeError(f"array {name!r} has dtype object; store strings as a unicode array")
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())


def dumps_json(obj: Any) -> str:
    """Stable JSON text: sorted keys, numpy scalars converted, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as stable JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(dumps_json(obj), encoding="utf-8")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
