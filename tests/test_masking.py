import pytest
import torch

from maelab.masking import effective_ratio, num_visible, random_masking


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
