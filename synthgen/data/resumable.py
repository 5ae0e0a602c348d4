"""A shuffling training loader that resumes mid-epoch: the batches after a resume are exactly the batches the
uninterrupted run would have seen.

* :class:`EpochShuffleSampler`: epoch ``e`` visits ``randperm(n)`` drawn from a generator seeded by
  ``(seed, e)`` only, never from state carried over from earlier epochs, so any epoch can be rebuilt alone.
  Under DDP every rank takes its own stride of the same permutation, like ``DistributedSampler``; with
  ``drop_last`` (the training loader) the permutation is cut to whole *global* batches first, so ``W`` ranks with
  ``B / W`` images each see, batch by batch, the images one process with ``B`` sees (global batch ``k`` is
  ``order[kB:(k+1)B]``; rank ``r`` holds its entries ``r, r + W, ...``) and an epoch has the same number of batches
  on any process count. The loader's position is kept against the global batch size, so a checkpoint resumes on
  another process count.
* :class:`ClassBalancedSampler`: tempered class-balanced draws instead (``train.class_balance`` = ``b`` in
  ``(0, 1]``): every slot of epoch ``e`` (still ``n`` slots, so epochs keep their length) picks class ``c`` with
  probability ``p_c`` proportional to ``n_c ** (1 - b)`` (``b = 0``: the data frequencies; ``b = 1``: uniform over
  classes), then an image of that class uniformly (with replacement), all from a generator seeded by
  ``(seed, e)``. ``b = 0`` uses :class:`EpochShuffleSampler` itself, so its batches are those of a loader without
  the option, byte for byte.
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

import numpy as np
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
    :class:`ResumableLoader`, and so is ``batch`` (per-rank batch size of a ``drop_last`` loader: the
    permutation is then cut to whole global batches of ``batch * world`` before it is dealt out, when it holds
    at least one). There is deliberately no ``set_epoch`` (see the module docstring).
    """

    batch: int | None = None

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int | None = None,
                 world_size: int | None = None):
        self.n, self.seed, self.shuffle = int(n), int(seed), bool(shuffle)
        self._rank, self._world = rank, world_size
        self.epoch = 0
        self.start = 0

    def _rank_world(self) -> tuple[int, int]:
        rank, world = _world()
        return (rank if self._rank is None else self._rank), (world if self._world is None else self._world)

    def _generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + int(epoch))

    def order(self, epoch: int) -> list[int]:
        """All ``n`` indices of ``epoch`` (every rank's), in visiting order, before padding."""
        if self.shuffle:
            return torch.randperm(self.n, generator=self._generator(epoch)).tolist()
        return list(range(self.n))

    def indices(self, epoch: int) -> list[int]:
        """This rank's indices of ``epoch``, in visiting order."""
        rank, world = self._rank_world()
        order = self.order(epoch)
        whole = self._whole_batches(world)
        if whole:
            return order[rank:whole:world]
        total = len(self) * world
        order = (order * math.ceil(total / max(1, self.n)))[:total] if self.n else []
        return order[rank:total:world]

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return iter(self.indices(self.epoch)[start:])

    def _whole_batches(self, world: int) -> int:
        """Entries of an epoch in whole global batches (0: no ``batch`` set, or fewer than one batch)."""
        per = int(self.batch or 0) * world
        return (self.n // per) * per if per else 0

    def __len__(self) -> int:
        world = self._rank_world()[1]
        whole = self._whole_batches(world)
        return whole // world if whole else math.ceil(self.n / world)


def class_mixture(counts: np.ndarray, class_balance: float) -> np.ndarray:
    """Class probabilities ``(K,)`` float64 proportional to ``counts ** (1 - class_balance)`` (0 for an empty
    class); ``class_balance`` in ``[0, 1]``."""
    counts = np.asarray(counts, dtype=np.float64)
    w = np.where(counts > 0, np.power(np.maximum(counts, 1.0), 1.0 - float(class_balance)), 0.0)
    return w / w.sum()


class ClassBalancedSampler(EpochShuffleSampler):
    """Indices of epoch ``epoch`` drawn class first, ``p_c`` proportional to ``n_c ** (1 - class_balance)``, then
    uniformly within the class; ``n`` draws an epoch, from the ``(seed, epoch)`` generator (module docstring).

    Args:
        labels: ``(n,)`` integer class labels ``0..K-1`` of the dataset's items.
        class_balance: ``b`` in ``(0, 1]``.
    """

    def __init__(self, labels: np.ndarray, seed: int, class_balance: float, rank: int | None = None,
                 world_size: int | None = None):
        labels = np.asarray(labels).astype(np.int64).ravel()
        super().__init__(len(labels), seed, True, rank, world_size)
        self.class_balance = float(class_balance)
        k = int(labels.max()) + 1 if len(labels) else 0
        self.counts = np.bincount(labels, minlength=k)
        self.probs = class_mixture(self.counts, self.class_balance) if len(labels) else np.zeros(0)
        self._members = torch.from_numpy(np.argsort(labels, kind="stable"))  # indices grouped by class
        self._offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64))
        self._sizes = torch.from_numpy(self.counts.astype(np.int64))

    def order(self, epoch: int) -> list[int]:
        if not self.n:
            return []
        g = self._generator(epoch)
        cls = torch.multinomial(torch.from_numpy(self.probs), self.n, replacement=True, generator=g)
        u = torch.rand(self.n, generator=g, dtype=torch.float64)
        within = torch.minimum((u * self._sizes[cls]).long(), self._sizes[cls] - 1)
        return self._members[self._offsets[cls] + within].tolist()


class ResumableLoader(DataLoader):
    """``DataLoader(dataset, batch_size, sampler=EpochShuffleSampler(len(dataset), seed, shuffle))`` whose
    position within an epoch survives a checkpoint (see the module docstring).

    With ``labels`` ``(n,)`` and ``class_balance > 0`` the sampler is a :class:`ClassBalancedSampler`.

    ``state_dict()`` -> ``{"epoch", "batches", "seed", "n", "batch_size"}`` (global batch size;
    + ``"class_balance"`` when > 0);
    ``load_state_dict`` of a state with another seed, size, batch size or class balance is ignored (the stream
    then starts again at epoch 0). An iterator left before the end of its epoch (``limit_train_batches``, a
    stop) is continued by the next one.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, shuffle: bool = True,
                 drop_last: bool = True, num_workers: int = 0, labels: np.ndarray | None = None,
                 class_balance: float = 0.0, **kwargs: Any):
        if class_balance > 0:
            if labels is None or len(labels) != len(dataset):  # type: ignore[arg-type]
                raise ValueError("class_balance > 0 needs one label per item")
            sampler: EpochShuffleSampler = ClassBalancedSampler(labels, seed, class_balance)
        else:
            sampler = EpochShuffleSampler(len(dataset), seed, shuffle)  # type: ignore[arg-type]
        if drop_last:
            sampler.batch = int(batch_size)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                         num_workers=num_workers, **kwargs)
        self._epoch = 0                  # epoch of the current (or last) iterator
        self._handed_out = 0             # batches handed out in that epoch
        self._pending: dict[str, int] | None = None  # a loaded position not yet used

    def _key(self) -> dict[str, Any]:
        # the global batch size: a position saved by W ranks resumes on any other count (module docstring)
        key: dict[str, Any] = {"seed": int(self.sampler.seed), "n": int(self.sampler.n),
                               "batch_size": int(self.batch_size) * int(self.sampler._rank_world()[1])}
        balance = float(getattr(self.sampler, "class_balance", 0.0))
        if balance > 0:
            key["class_balance"] = balance
        return key

    def state_dict(self) -> dict[str, Any]:
        pos = self._pending or {"epoch": self._epoch, "batches": self._handed_out}  # loaded, not yet used: keep
        return {"epoch": int(pos["epoch"]), "batches": int(pos["batches"]), **self._key()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        key = self._key()
        if any(float(state_dict.get(k, -1)) != float(v) for k, v in key.items()) or (
                "class_balance" in state_dict and "class_balance" not in key):
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
