"""Consumer helper: a training pipeline over synthgen's WebDataset shards (public API).

Plain ``webdataset`` reads the shards without synthgen (see the dataset card); this helper adds what a
training loop needs::

    from synthgen.shards import synthetic_pipeline
    ds = synthetic_pipeline("data/export/synthetic", batch_size=64, seed=0)      # a folder, a brace
    ds = synthetic_pipeline("s3://bucket/synth/synthetic-{000000..000009}.tar",   # pattern or URLs
                            real_urls="real-{0000..0003}.tar", real_fraction=0.5, batch_size=64)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=4)
    for epoch in range(n):
        ds.set_epoch(epoch)                      # new, still seeded, shard and sample order
        for batch in loader: batch["image"], batch["label"], batch["synthetic"]

- Sources: local paths, brace patterns (``a-{000000..000009}.tar``), ``::``-separated lists, an export
  folder (its ``index.json`` lists the shards), and anything webdataset's ``gopen`` opens: ``pipe:cmd``,
  ``http(s)://`` (curl), ``gs://``; ``s3://`` URLs are streamed with ``pipe:aws s3 cp <url> -``.
- Decoding: ``npy`` -> float32 tensor ``(C, H, W)`` = stored / dtype max (``[0, 1]`` for uint8|uint16);
  without ``npy`` (a real-data WebDataset), the first of ``png``/``jpg``/``jpeg`` is decoded with PIL
  (8-bit / 255, 16-bit / 65535). Labels from ``cls``.
- Order: shards are shuffled with ``(seed, epoch)`` (identical on every rank), then split over DDP ranks
  (``split_by_node``: ``RANK``/``WORLD_SIZE`` or ``torch.distributed``) and DataLoader workers
  (``split_by_worker``), then samples are shuffled in a buffer seeded by ``(seed, epoch, rank, worker)``.
  Give every rank x worker at least one shard (the export's ``shard_size.samples`` controls the count).
- Mixing: with ``real_urls``, each output sample is drawn from the real stream with probability
  ``real_fraction`` (seeded, per rank and worker); the synthetic stream defines the epoch and the real
  stream restarts when it runs out.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import webdataset as wds
from webdataset.shardlists import expand_urls as _wds_expand_urls
from webdataset.utils import pytorch_worker_info

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg")


def expand_urls(urls: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Shard URLs from a pattern, a list, or an export folder (``index.json``); ``s3://`` -> ``pipe:``."""
    items = [urls] if isinstance(urls, (str, os.PathLike)) else list(urls)
    out: list[str] = []
    for item in items:
        item = os.fspath(item)
        if "://" not in item and not item.startswith("pipe:") and Path(item, "index.json").is_file():
            index = json.loads(Path(item, "index.json").read_text(encoding="utf-8"))
            out += [str(Path(item, s["path"])) for s in index["shards"]]
            continue
        out += _wds_expand_urls(item)
    if not out:
        raise ValueError(f"no shards in {urls!r}")
    return [f"pipe:aws s3 cp {u} -" if u.startswith("s3://") else u for u in out]


def to_float(array: np.ndarray) -> np.ndarray:
    """Stored intensities -> float32: unsigned/signed integers / dtype max (``[0, 1]`` for uint), floats as is."""
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)
    return array.astype(np.float32)


def decode_sample(sample: dict[str, Any], synthetic: bool = True) -> dict[str, Any]:
    """A raw webdataset sample -> ``{"image": (C, H, W) float32 tensor, "label": int64 tensor,
    "synthetic": bool, "__key__": str}``."""
    if "npy" in sample:
        x = np.load(io.BytesIO(sample["npy"]), allow_pickle=False)
        x = x[None] if x.ndim == 2 else x
    else:
        ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
        if ext is None:
            raise ValueError(f"sample {sample.get('__key__')!r} has no npy or image member ({sorted(sample)})")
        from PIL import Image

        with Image.open(io.BytesIO(sample[ext])) as im:
            x = np.asarray(im)
        if x.dtype == np.int32:  # PIL's 16-bit greyscale ("I;16" may come back as int32)
            x = x.astype(np.uint16)
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    if "cls" not in sample:
        raise ValueError(f"sample {sample.get('__key__')!r} has no cls member")
    label = int(bytes(sample["cls"]).decode("ascii").strip())
    return {"image": torch.from_numpy(np.ascontiguousarray(to_float(x))),
            "label": torch.tensor(label, dtype=torch.int64), "synthetic": synthetic,
            "__key__": str(sample.get("__key__", ""))}


class _EpochSeeded:
    """Base of the pipeline stages whose randomness is ``(seed, epoch, ...)``; ``epoch`` is shared."""

    def __init__(self, seed: int, epoch: list[int]):
        self.seed, self.epoch = int(seed), epoch

    def rng(self, per_worker: bool) -> random.Random:
        rank, _, worker, _ = pytorch_worker_info()
        parts = (self.seed, self.epoch[0]) + ((rank, worker) if per_worker else ())
        return random.Random("-".join(map(str, parts)))


class _ShardList(_EpochSeeded, torch.utils.data.IterableDataset):
    """Source stage: ``{"url": ...}`` per shard, shuffled identically on every rank (before splitting)."""

    def __init__(self, urls: list[str], shuffle: bool, seed: int, epoch: list[int]):
        super().__init__(seed, epoch)
        self.urls, self.shuffle = urls, shuffle

    def __iter__(self) -> Iterator[dict[str, str]]:
        urls = list(self.urls)
        if self.shuffle:
            self.rng(per_worker=False).shuffle(urls)
        for u in urls:
            yield {"url": u}


class _Shuffle(_EpochSeeded):
    """Buffer shuffle of samples, seeded per ``(seed, epoch, rank, worker)``."""

    def __init__(self, bufsize: int, seed: int, epoch: list[int]):
        super().__init__(seed, epoch)
        self.bufsize = int(bufsize)

    def __call__(self, src: Iterable[Any]) -> Iterator[Any]:
        rng, buf = self.rng(per_worker=True), []
        for s in src:
            buf.append(s)
            if len(buf) >= self.bufsize:
                i = rng.randrange(len(buf))
                buf[i], buf[-1] = buf[-1], buf[i]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf


class _Mix(_EpochSeeded):
    """Stage: draw from the real stream with probability ``fraction``, else from the synthetic input."""

    def __init__(self, real: "SyntheticPipeline", fraction: float, seed: int, epoch: list[int]):
        super().__init__(seed + 7919, epoch)
        self.real, self.fraction = real, float(fraction)

    def __call__(self, src: Iterable[Any]) -> Iterator[Any]:
        rng = self.rng(per_worker=True)
        self.real.set_epoch(self.epoch[0])
        real = iter(self.real)
        for s in src:
            while rng.random() < self.fraction:
                try:
                    yield next(real)
                except StopIteration:
                    real = iter(self.real)
                    try:
                        yield next(real)
                    except StopIteration:  # empty real stream: nothing to mix in
                        break
            yield s


class SyntheticPipeline(wds.DataPipeline):
    """``wds.DataPipeline`` with :meth:`set_epoch` (reseeds shard and sample shuffling, like a sampler)."""

    def __init__(self, *stages: Any, epoch: list[int]):
        super().__init__(*stages)
        self._epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = int(epoch)


def _stream(urls: list[str], *, synthetic: bool, shuffle: int, seed: int, split_nodes: bool,
            split_workers: bool, handler: Callable[[Exception], bool], epoch: list[int],
            extra: Sequence[Any] = ()) -> SyntheticPipeline:
    stages: list[Any] = [_ShardList(urls, shuffle > 0, seed, epoch)]
    if split_nodes:
        stages.append(wds.split_by_node)
    if split_workers:
        stages.append(wds.split_by_worker)
    stages.append(wds.tarfile_to_samples(handler=handler))
    if shuffle > 0:
        stages.append(_Shuffle(shuffle, seed, epoch))
    stages.append(wds.map(lambda s: decode_sample(s, synthetic=synthetic), handler=handler))
    stages += list(extra)
    return SyntheticPipeline(*stages, epoch=epoch)


def synthetic_pipeline(urls: str | os.PathLike | Sequence[str | os.PathLike], *, batch_size: int | None = None,
                       shuffle: int = 1000, seed: int = 0, real_urls: Any = None, real_fraction: float = 0.0,
                       split_nodes: bool = True, split_workers: bool = True, epoch_samples: int | None = None,
                       handler: Callable[[Exception], bool] = wds.reraise_exception,
                       partial_batches: bool = True) -> SyntheticPipeline:
    """A training pipeline over synthetic shards, optionally mixed with a real-data WebDataset.

    Args:
        urls: shards (see :func:`expand_urls`).
        batch_size: collate into batches of this size (``torch.utils.data.default_collate``: ``image``
            ``(B, C, H, W)`` float32, ``label`` ``(B,)`` int64, ``synthetic`` ``(B,)`` bool, ``__key__`` list);
            None yields single samples.
        shuffle: sample shuffle buffer (0 = no shard or sample shuffling: file order).
        seed: seeds every shuffle and the mixing draw (with the epoch from :meth:`SyntheticPipeline.set_epoch`).
        real_urls, real_fraction: real-data shards (``npy`` or ``png``/``jpg`` + ``cls``) and the probability
            in ``[0, 1)`` that an output sample is real.
        split_nodes, split_workers: split shards over DDP ranks / DataLoader workers.
        epoch_samples: make each (per-worker) epoch exactly this many samples (``with_epoch``).
        handler: webdataset error handler (``wds.warn_and_continue`` to skip corrupt samples).
        partial_batches: keep the last, smaller batch.
    """
    if not 0.0 <= real_fraction < 1.0:
        raise ValueError(f"real_fraction must be in [0, 1), got {real_fraction}")
    if real_fraction > 0 and real_urls is None:
        raise ValueError("real_fraction > 0 needs real_urls")
    epoch = [0]
    extra: list[Any] = []
    if real_urls is not None and real_fraction > 0:
        real = _stream(expand_urls(real_urls), synthetic=False, shuffle=shuffle, seed=seed + 1,
                       split_nodes=split_nodes, split_workers=split_workers, handler=handler, epoch=[0])
        extra.append(_Mix(real, real_fraction, seed, epoch))
    if batch_size is not None:
        extra.append(wds.batched(int(batch_size), collation_fn=torch.utils.data.default_collate,
                                 partial=partial_batches))
    pipe = _stream(expand_urls(urls), synthetic=True, shuffle=shuffle, seed=seed, split_nodes=split_nodes,
                   split_workers=split_workers, handler=handler, epoch=epoch, extra=extra)
    if epoch_samples is not None:
        pipe = pipe.with_epoch(int(epoch_samples))
    return pipe


__all__ = ["SyntheticPipeline", "decode_sample", "expand_urls", "synthetic_pipeline", "to_float"]
