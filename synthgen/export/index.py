"""``index.json``: the table of contents of an export folder (checked by ``synthgen verify``).

Layout::

    {"name", "formats", "class_names", "extensions", "sample": {"shape": [C, H, W], "dtype"},
                                                 # 3D: {"shape": [C, D, H, W], "dtype", "dims": 3,
                                                 #      "spacing": [sz, sy, sx]}
     "generator", "synthgen_version", "checkpoint_sha256", "config_hash",
     "shards": [{"path", "sha256", "bytes", "samples", "classes": {class: count}}],   # paths relative
     "files":  [{"path", "sha256", "bytes"}],             # DICOM / NIfTI copies (export.format), relative
     "totals": {"shards", "samples", "bytes", "classes": {class: count}},
     "__kind__": "wids-shard-index-v1", "wids_version": 1,
     "shardlist": [{"url", "nsamples", "filesize"}]}   # the same shards in wids' descriptor format

The ``shardlist`` part makes the file a ``wids`` descriptor too (``wids.ShardListDataset("index.json")`` gives
indexed random access; urls are relative to the index file).
"""

from __future__ import annotations

from typing import Any, Sequence

from .audited import AuditedCohort
from .encode import extensions, provenance

INDEX_NAME = "index.json"


def build_index(cohort: AuditedCohort, name: str, formats: Sequence[str], shards: list[dict[str, Any]],
                files: list[dict[str, Any]], spacing: Sequence[float] | None = None) -> dict[str, Any]:
    """Assemble the index from the shard entries of :func:`write_shards` and the extra format files
    (``spacing``: ``[sz, sy, sx]`` mm of a 3D export, recorded in ``sample``; 2D exports have none)."""
    names = cohort.class_names
    sample: dict[str, Any] = {"shape": list(cohort.images.shape[1:]), "dtype": str(cohort.images.dtype)}
    if cohort.images.ndim == 5:
        sample.update(dims=3, spacing=[float(s) for s in spacing])
    classes = {c: sum(s["classes"].get(c, 0) for s in shards) for c in names}
    return {
        "name": name,
        "formats": list(formats),
        "class_names": names,
        "extensions": list(extensions(cohort.images.ndim - 1)),
        "sample": sample,
        **provenance(cohort),
        "shards": shards,
        "files": files,
        "totals": {"shards": len(shards), "samples": sum(s["samples"] for s in shards),
                   "bytes": sum(s["bytes"] for s in shards) + sum(f["bytes"] for f in files),
                   "classes": classes},
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "shardlist": [{"url": s["path"], "nsamples": s["samples"], "filesize": s["bytes"]} for s in shards],
    }
