from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maelab.data.batching import epoch_batches, epoch_permutation, steps_per_epoch
from maelab.errors import DataError


def test_permutation_is_deterministic_per_seed_and_epoch() -> None:
    p = epoch_permutation(1000, seed=1, epoch=3)
    assert torch.equal(p, epoch_permutation(1000, seed=1, epoch=3))
    assert torch.equal(p.sort().values, torch.arange(1000))
    assert not torch.equal(p, epoch_permutation(1000, seed=1, epoch=4))
    assert not torch.equal(p, epoch_permutation(1000, seed=2, epoch=3))
    assert not torch.equal(epoch_permutation(1000, 0, 1), epoch_permutation(1000, 1, 0))


def test_batches_cover_the_epoch_once_and_drop_the_last_partial_batch() -> None:
    batches = epoch_batches(103, 10, seed=0, epoch=0)
    assert len(batches) == 10 == steps_per_epoch(103, 10)
    assert all(b.shape == (10,) and b.dtype == torch.int64 for b in batches)
    seen = torch.cat(batches)
    assert len(seen.unique()) == 100
    assert torch.equal(seen, epoch_permutation(103, 0, 0)[:100])


def test_two_ranks_see_what_one_rank_with_twice_the_batch_sees() -> None:
    one = epoch_batches(100, 16, seed=5, epoch=2)
    r0 = epoch_batches(100, 8, seed=5, epoch=2, rank=0, world_size=2)
    r1 = epoch_batches(100, 8, seed=5, epoch=2, rank=1, world_size=2)
    assert len(one) == len(r0) == len(r1) == steps_per_epoch(100, 8, world_size=2) == 6
    for step in range(len(one)):
        assert torch.equal(torch.cat([r0[step], r1[step]]), one[step])
        assert not set(r0[step].tolist()) & set(r1[step].tolist())


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), batch_size=st.integers(1, 40), world_size=st.integers(1, 4), seed=st.integers(0, 2**40))
def test_shards_are_disjoint_and_cover_all_full_global_batches(n, batch_size, world_size, seed) -> None:
    if batch_size * world_size > n:
        with pytest.raises(DataError):
            steps_per_epoch(n, batch_size, world_size)
        return
    shards = [epoch_batches(n, batch_size, seed, 0, r, world_size) for r in range(world_size)]
    steps = n // (batch_size * world_size)
    assert all(len(s) == steps for s in shards)
    everything = torch.cat([b for s in shards for b in s])
    assert len(everything) == steps * batch_size * world_size == len(everything.unique())
    assert everything.min() >= 0 and everything.max() < n


def test_batch_larger_than_the_data_is_a_clear_error() -> None:
    with pytest.raises(DataError) as info:
        epoch_batches(100, 512, seed=0, epoch=0)
    assert str(info.value) == ("optim.batch_size=512 is larger than the training set (100 images): "
                               "lower it or raise data.limit_train")
    with pytest.raises(DataError, match=r"64 x 2 ranks = 128 is larger than the training set \(100 images\)"):
        steps_per_epoch(100, 64, world_size=2)


def test_bad_rank_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        epoch_batches(100, 10, 0, 0, rank=2, world_size=2)
    with pytest.raises(ValueError):
        steps_per_epoch(100, 0)


def test_batches_come_on_the_requested_device_with_the_same_order() -> None:
    on_cpu = epoch_batches(100, 16, seed=3, epoch=2)
    elsewhere = epoch_batches(100, 16, seed=3, epoch=2, device="meta")  # a second device, with no data
    assert all(b.device.type == "meta" for b in elsewhere) and all(b.device.type == "cpu" for b in on_cpu)
    assert [b.shape for b in elsewhere] == [b.shape for b in on_cpu]
