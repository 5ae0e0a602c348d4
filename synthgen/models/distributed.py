"""Data-parallel training that is equivalent to one process at the same global batch.

Under DDP with ``W`` processes every rank holds ``b = B / W`` images of a global batch of ``B``. The training
sampler (:class:`~synthgen.data.resumable.EpochShuffleSampler`) deals the global batch out by stride: rank ``r``
holds the images at global positions ``r, r + W, r + 2W, ...``. For the training to be that of one process with
batch ``B`` (up to float summation order), every random draw must be the draw one process would make for that
position, and every statistic over the batch must be over the global batch:

* :class:`BatchSlice` (:func:`batch_slice`): draw the global batch's values from the rank-independent training
  generator, keep this rank's rows (``rows = r + W * arange(b)``). With ``W = 1`` the draws are exactly the
  single-process draws, so single-process training is unchanged byte for byte.
* :class:`DistBatchNorm2d`: ``BatchNorm2d`` whose training statistics are all-reduced over the ranks
  (differentiably, like ``torch.nn.SyncBatchNorm``, which accepts only GPU tensors); with one process it is
  ``BatchNorm2d`` itself.
* :func:`all_reduce_sum` (differentiable) for batch-level ratios such as the GAN's mode-seeking term and
  :func:`gather_global` for values each rank needs for the whole batch (the GAN's labels).

The mean of per-rank mean losses is the global mean loss when every rank holds the same number of samples,
and DDP averages gradients, so the gradients are those of the global loss.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialized default process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class BatchSlice(NamedTuple):
    """This rank's rows of a global batch: ``total`` = global batch size, ``rows`` ``(b,)`` int64 positions
    (None with one process: all rows, in order)."""

    total: int
    rows: torch.Tensor | None

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """Rows ``rows`` of a tensor whose first dimension is the global batch."""
        return x if self.rows is None else x[self.rows.to(x.device)]


def batch_slice(n_local: int) -> BatchSlice:
    """The :class:`BatchSlice` of a local batch of ``n_local`` samples: global size ``n_local * W``, rows
    ``rank + W * arange(n_local)`` (the training sampler's stride)."""
    rank, w = world()
    if w == 1:
        return BatchSlice(int(n_local), None)
    return BatchSlice(int(n_local) * w, torch.arange(int(n_local), dtype=torch.long) * w + rank)


class RowDraws(NamedTuple):
    """A CPU generator plus a :class:`BatchSlice`: draw ``(total, ...)`` and keep the slice's rows. Passed
    where a ``torch.Generator`` is accepted by :mod:`synthgen.models.diffaugment`."""

    generator: torch.Generator
    slice: BatchSlice


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over the ranks, differentiable (the gradient of every rank's copy flows back to every
    rank's input); ``x`` itself with one process."""
    if world()[1] == 1:
        return x
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x, op=dist.ReduceOp.SUM)


def gather_global(x: torch.Tensor) -> torch.Tensor:
    """The global batch ``(b * W, ...)`` of a per-rank tensor ``(b, ...)`` (not differentiable), in the
    sampler's order: global row ``r + W * j`` is rank ``r``'s row ``j``. ``x`` itself with one process."""
    w = world()[1]
    if w == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(w)]
    dist.all_gather(parts, x.contiguous())
    return torch.stack(parts, dim=1).reshape(-1, *x.shape[1:])


class DistBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` with statistics over the global batch in training under a process group of more than
    one rank (two-pass mean and biased variance all-reduced over the ranks, differentiably; running statistics
    updated with the unbiased variance, as ``BatchNorm2d`` does). Works on CPU (gloo) and GPU. One process,
    eval mode, or ``sync = False`` (set on modules whose inputs are the same on every rank, e.g. the EMA
    generator's standing statistics): plain ``BatchNorm2d``. Same parameters and buffers as ``BatchNorm2d``, so
    checkpoints load into either."""

    sync: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.sync and world()[1] > 1):
            return super().forward(x)
        xf = x.float()
        count = all_reduce_sum(torch.tensor(float(x.numel() // x.size(1)), device=x.device))
        mean = all_reduce_sum(xf.sum(dim=(0, 2, 3))) / count
        var = all_reduce_sum((xf - mean[None, :, None, None]).pow(2).sum(dim=(0, 2, 3))) / count
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else float(self.momentum)
                n = float(count)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                self.running_var.lerp_((var.detach() * n / max(n - 1.0, 1.0)).to(self.running_var.dtype), m)
        out = (xf - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out.to(x.dtype)


def draw_rows(shape: tuple[int, ...], sl: BatchSlice, draw: Callable[[tuple[int, ...]], torch.Tensor]
              ) -> torch.Tensor:
    """``draw`` a tensor for the global batch (``shape`` with its first dimension replaced by ``sl.total``)
    and keep this rank's rows: ``(b, *shape[1:])``."""
    return sl.take(draw((sl.total, *tuple(shape)[1:])))


__all__ = ["BatchSlice", "DistBatchNorm2d", "RowDraws", "all_reduce_sum", "batch_slice", "draw_rows",
           "gather_global", "world"]
