"""A shuffling training loader that resumes mid-epoch: the batches after a resume are exactly the batches the
uninterrupted run would have seen.

* :class:`EpochShuffleSampler`: epoch ``e`` visits ``randperm(n)`` drawn from a generator seeded by
  ``(seed, e)`` only, never from state carried over from earlier epochs, so any epoch can be rebuilt alone.
  Under DDP every rank takes its own stride of the same (padded) permutation, like ``DistributedSampler``.
* :class:`ResumableLoader`: a ``DataLoader`` over that sampler implementing Lightning's stateful-dataloader
  protocol (``state_dict``/``load_state_dict``, Lightning >= 2.3). Its batches form one stream over
  successive epochs; the state is the position in that stream, ``{epoch, batches}`` (batches this rank has
  handed out in that epoch). Lightning saves it with every checkpoint and loads it before it iterates again;
  the next iterator continues from there, skipping at the index level (skipped images are never loaded), and
  starts epoch ``epoch + 1`` when the saved epoch was complete.

Epochs are counted by the loader itself (completed passes), not taken from Lightning's ``set_epoch``: Lightning's
epoch counter skips a number when a run resumes from an end-of-training checkpoint, which would change the
order of the data. The count is taken where batches leave the loader's own iterator, so it is exact with worker
processes too (workers prefetch indices, but the main process hands batches out in order); Lightning does not
prefetch from loaders of known length.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler


def _world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialized default process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochShuffleSampler(Sampler[int]):
    """Indices of one rank's share of epoch ``epoch``: a permutation of ``range(n)`` seeded by ``(seed, epoch)``
    (``shuffle=False``: ``0..n-1``), padded by wrapping to a multiple of the world size, every ``world``-th
    entry from ``rank``. Rank and world size are read from ``torch.distributed`` when not given.

    ``epoch`` and ``start`` (indices of the next iteration to skip, one use only) are set by
    :class:`ResumableLoader`. There is deliberately no ``set_epoch`` (see the module docstring).
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int | None = None,
                 world_size: int | None = None):
        self.n, self.seed, self.shuffle = int(n), int(seed), bool(shuffle)
        self._rank, self._world = rank, world_size
        self.epoch = 0
        self.start = 0

    def _rank_world(self) -> tuple[int, int]:
        rank, world = _world()
        return (rank if self._rank is None else self._rank), (world if self._world is None else self._world)

    def indices(self, epoch: int) -> list[int]:
        """This rank's indices of ``epoch``, in visiting order."""
        rank, world = self._rank_world()
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = len(self) * world
        order = (order * math.ceil(total / max(1, self.n)))[:total] if self.n else []
        return order[rank:total:world]

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return iter(self.indices(self.epoch)[start:])

    def __len__(self) -> int:
        return math.ceil(self.n / self._rank_world()[1])


class ResumableLoader(DataLoader):
    """``DataLoader(dataset, batch_size, sampler=EpochShuffleSampler(len(dataset), seed, shuffle))`` whose
    position within an epoch survives a checkpoint (see the module docstring).

    ``state_dict()`` -> ``{"epoch", "batches", "seed", "n", "batch_size"}``; ``load_state_dict`` of a state with
    another seed, size or batch size is ignored (the stream then starts again at epoch 0). An iterator left
    before the end of its epoch (``limit_train_batches``, a stop) is continued by the next one.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, shuffle: bool = True,
                 drop_last: bool = True, num_workers: int = 0, **kwargs: Any):
        sampler = EpochShuffleSampler(len(dataset), seed, shuffle)  # type: ignore[arg-type]
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                         num_workers=num_workers, **kwargs)
        self._epoch = 0                  # epoch of the current (or last) iterator
        self._handed_out = 0             # batches handed out in that epoch
        self._pending: dict[str, int] | None = None  # a loaded position not yet used

    def _key(self) -> dict[str, int]:
        return {"seed": int(self.sampler.seed), "n": int(self.sampler.n), "batch_size": int(self.batch_size)}

    def state_dict(self) -> dict[str, int]:
        pos = self._pending or {"epoch": self._epoch, "batches": self._handed_out}  # loaded, not yet used: keep
        return {"epoch": int(pos["epoch"]), "batches": int(pos["batches"]), **self._key()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if any(int(state_dict.get(k, -1)) != v for k, v in self._key().items()):
            self._pending = None
            return
        self._pending = {"epoch": int(state_dict["epoch"]), "batches": int(state_dict["batches"])}

    def __iter__(self) -> Iterator[Any]:
        # A generator: nothing runs until the first batch is requested (Lightning creates iterators it never
        # uses, e.g. when a resumed run has nothing left to train).
        pos, self._pending = self._pending or {"epoch": self._epoch, "batches": self._handed_out}, None
        epoch, skip = pos["epoch"], pos["batches"]
        if skip >= len(self):
            epoch, skip = epoch + 1, 0
        self.sampler.epoch, self.sampler.start = epoch, skip * int(self.batch_size)
        self._epoch, self._handed_out = epoch, skip
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch
