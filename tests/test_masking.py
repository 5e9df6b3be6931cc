import pytest
import torch

from maelab.masking import (
    effective_ratio,
    effective_ratios,
    num_visible,
    num_visible_per_sample,
    random_masking,
    random_masking_per_sample,
)


@pytest.mark.parametrize("num_patches,ratio,expected", [
    (64, 0.75, 16), (64, 0.5, 32), (64, 0.9, 6), (49, 0.75, 12), (16, 0.6, 6),
    (64, 0.0, 63), (64, 1.0, 1), (64, 0.999, 1), (64, 0.001, 63),
])
def test_num_visible_rounds_and_clamps(num_patches, ratio, expected):
    assert num_visible(num_patches, ratio) == expected


def test_effective_ratio_is_what_the_encoder_sees():
    assert effective_ratio(64, 0.75) == 0.75
    assert effective_ratio(64, 1.0) == 63 / 64
    assert effective_ratio(64, 0.0) == 1 / 64


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.75, 0.9, 1.0])
def test_random_masking_invariants(ratio):
    g = torch.Generator().manual_seed(0)
    n, num = 8, 64
    ids_keep, mask, ids_restore = random_masking(n, num, ratio, generator=g)
    keep = num_visible(num, ratio)
    assert ids_keep.shape == (n, keep)
    assert torch.equal(mask.sum(1), torch.full((n,), float(num - keep)))
    # the kept indices are exactly the unmasked positions
    for i in range(n):
        assert set(ids_keep[i].tolist()) == set(torch.nonzero(mask[i] == 0).flatten().tolist())
    # ids_restore inverts the shuffle: shuffled tokens gathered with ids_restore are back in order
    tokens = torch.arange(num).expand(n, num)
    shuffled = torch.argsort(ids_restore, dim=1)  # ids_shuffle
    assert torch.equal(torch.gather(torch.gather(tokens, 1, shuffled), 1, ids_restore), tokens)
    assert torch.equal(shuffled[:, :keep], ids_keep)


def test_masks_differ_per_sample_and_follow_the_generator():
    a = random_masking(4, 64, 0.75, generator=torch.Generator().manual_seed(1))[1]
    b = random_masking(4, 64, 0.75, generator=torch.Generator().manual_seed(1))[1]
    c = random_masking(4, 64, 0.75, generator=torch.Generator().manual_seed(2))[1]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])


def test_ratio_outside_unit_interval_is_refused():
    with pytest.raises(ValueError):
        num_visible(64, 1.5)


def test_per_sample_counts_match_num_visible():
    ratios = torch.tensor([0.0, 0.001, 0.3, 0.5, 0.75, 0.9, 0.999, 1.0])
    assert num_visible_per_sample(64, ratios).tolist() == [num_visible(64, float(r)) for r in ratios]
    assert num_visible_per_sample(64, ratios).tolist() == [63, 63, 45, 32, 16, 6, 1, 1]
    assert effective_ratios(64, ratios).tolist() == [effective_ratio(64, float(r)) for r in ratios]
    with pytest.raises(ValueError):
        num_visible_per_sample(64, torch.tensor([[0.5]]))
    with pytest.raises(ValueError):
        num_visible_per_sample(64, torch.tensor([0.5, 1.5]))


def test_per_sample_masking_keeps_each_samples_own_count():
    ratios = torch.tensor([0.1, 0.5, 0.75, 0.95, 0.5])
    g = torch.Generator().manual_seed(0)
    ids_keep, mask, ids_restore, valid = random_masking_per_sample(64, ratios, generator=g)
    keep = num_visible_per_sample(64, ratios)
    assert ids_keep.shape == (5, int(keep.max())) and valid.shape == ids_keep.shape
    assert valid.sum(1).tolist() == keep.tolist()
    assert (64 - mask.sum(1)).tolist() == keep.tolist()
    for i in range(5):
        visible = set(torch.nonzero(mask[i] == 0).flatten().tolist())
        assert set(ids_keep[i][valid[i]].tolist()) == visible  # the valid part is exactly the visible patches
        assert not set(ids_keep[i][~valid[i]].tolist()) & visible  # padding points at masked patches
        assert valid[i, : keep[i]].all() and not valid[i, keep[i]:].any()  # visible first, then padding
    tokens = torch.arange(64).expand(5, 64)
    shuffled = torch.argsort(ids_restore, dim=1)
    assert torch.equal(torch.gather(torch.gather(tokens, 1, shuffled), 1, ids_restore), tokens)


def test_per_sample_with_equal_ratios_is_the_batch_masking_without_padding():
    a = random_masking(4, 64, 0.6, generator=torch.Generator().manual_seed(3))
    b = random_masking_per_sample(64, torch.full((4,), 0.6), generator=torch.Generator().manual_seed(3))
    assert b[3] is None  # no padding, no key mask: the fast path
    assert all(torch.equal(x, y) for x, y in zip(a, b[:3], strict=True))
