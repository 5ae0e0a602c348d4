"""The seeded, resumable training loader (synthgen.data.resumable): epochs from (seed, epoch) only, DDP shards,
and a loader restored from a state continues with exactly the batches the original would have produced."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from synthgen.data.resumable import EpochShuffleSampler, ResumableLoader


def _batches(loader, n):
    out, it = [], iter(loader)
    while len(out) < n:
        try:
            out.append(next(it)[0].tolist())
        except StopIteration:
            it = iter(loader)  # Lightning starts the next epoch with a new iterator
    return out


def _ds(n=23):
    return TensorDataset(torch.arange(n), torch.zeros(n))


def test_epochs_are_seeded_permutations_and_ranks_split_them():
    s = EpochShuffleSampler(10, seed=3)
    e0, e1 = s.indices(0), s.indices(1)
    assert sorted(e0) == list(range(10)) and sorted(e1) == list(range(10)) and e0 != e1
    assert EpochShuffleSampler(10, seed=3).indices(1) == e1 and EpochShuffleSampler(10, seed=4).indices(1) != e1
    assert EpochShuffleSampler(10, seed=3, shuffle=False).indices(5) == list(range(10))
    shards = [EpochShuffleSampler(10, seed=3, rank=r, world_size=3).indices(1) for r in range(3)]
    assert [len(x) for x in shards] == [4, 4, 4]  # padded to 12 by wrapping, like DistributedSampler
    assert sorted(i for x in shards for i in x) == sorted(e1 + e1[:2])


def test_a_restored_loader_continues_the_batch_stream_exactly():
    ref = _batches(ResumableLoader(_ds(), batch_size=4, seed=7), 20)  # 5 batches an epoch, last 3 dropped
    assert ref[:5] != ref[5:10] and all(len(set(sum(ref[e:e + 5], []))) == 20 for e in (0, 5, 10, 15))
    for k in (1, 4, 5, 7, 10, 13):
        a = ResumableLoader(_ds(), batch_size=4, seed=7)
        seen = _batches(a, k)
        state = a.state_dict()
        b = ResumableLoader(_ds(), batch_size=4, seed=7)
        b.load_state_dict(state)
        assert b.state_dict() == state  # saved again before it was used: still the same position
        assert seen + _batches(b, 20 - k) == ref, k


def test_a_foreign_state_is_ignored():
    a = ResumableLoader(_ds(), batch_size=4, seed=7)
    _batches(a, 3)
    b = ResumableLoader(_ds(), batch_size=4, seed=8)
    b.load_state_dict(a.state_dict())
    assert _batches(b, 5) == _batches(ResumableLoader(_ds(), batch_size=4, seed=8), 5)
