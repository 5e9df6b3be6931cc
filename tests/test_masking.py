import pytest
import torch

from maelab.masking import (
    draw_mask,
    effective_ratio,
    effective_ratios,
    mask_from_noise,
    mask_noise,
    num_visible,
    num_visible_per_sample,
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
def test_a_drawn_mask_keeps_the_rounded_count_and_names_the_masked_patches(ratio):
    g = torch.Generator().manual_seed(0)
    n, num = 8, 64
    m = draw_mask(n, num, ratio, generator=g)
    keep = num_visible(num, ratio)
    assert m.ids_keep.shape == (n, keep) and m.num_visible == keep and m.keep_valid is None and m.weights is None
    assert m.ids_masked.shape == (n, num - keep)
    assert torch.equal(m.binary.sum(1), torch.full((n,), float(num - keep)))
    for i in range(n):  # the kept indices are exactly the unmasked positions, ids_masked the masked ones
        assert set(m.ids_keep[i].tolist()) == set(torch.nonzero(m.binary[i] == 0).flatten().tolist())
        assert set(m.ids_masked[i].tolist()) == set(torch.nonzero(m.binary[i] == 1).flatten().tolist())
    # ids_restore inverts the shuffle: shuffled tokens gathered with ids_restore are back in order
    tokens = torch.arange(num).expand(n, num)
    shuffled = torch.argsort(m.ids_restore, dim=1)  # ids_shuffle
    assert torch.equal(torch.gather(torch.gather(tokens, 1, shuffled), 1, m.ids_restore), tokens)
    assert torch.equal(shuffled[:, :keep], m.ids_keep)


def test_masks_differ_per_sample_and_follow_the_generator():
    a = draw_mask(4, 64, 0.75, generator=torch.Generator().manual_seed(1)).binary
    b = draw_mask(4, 64, 0.75, generator=torch.Generator().manual_seed(1)).binary
    c = draw_mask(4, 64, 0.75, generator=torch.Generator().manual_seed(2)).binary
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])


def test_a_mask_from_noise_drawn_outside_is_the_drawn_mask():
    # what a compiled step does: the noise drawn first, the visible count a static int
    noise = mask_noise(4, 64, generator=torch.Generator().manual_seed(5))
    drawn = draw_mask(4, 64, 0.75, generator=torch.Generator().manual_seed(5))
    from_noise = mask_from_noise(noise, num_visible(64, 0.75))
    assert all(torch.equal(x, y) for x, y in zip(drawn[:4], from_noise[:4], strict=True))


def test_ratios_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"\(3,\) per-sample mask ratios for a batch of 4 images"):
        draw_mask(4, 64, torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="outside"):
        draw_mask(4, 64, 1.5)


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
    m = draw_mask(5, 64, ratios, generator=torch.Generator().manual_seed(0))
    keep = num_visible_per_sample(64, ratios)
    valid = m.keep_valid
    assert m.ids_keep.shape == (5, int(keep.max())) and valid.shape == m.ids_keep.shape
    assert valid.sum(1).tolist() == keep.tolist()
    assert (64 - m.binary.sum(1)).tolist() == keep.tolist()
    # ids_masked: every sample's masked patches (64 - the smallest count), weighted 1 where masked for it
    assert m.ids_masked.shape == (5, 64 - int(keep.min()))
    assert m.weights.sum(1).tolist() == (64 - keep).tolist()
    for i in range(5):
        visible = set(torch.nonzero(m.binary[i] == 0).flatten().tolist())
        assert set(m.ids_keep[i][valid[i]].tolist()) == visible  # the valid part is exactly the visible patches
        assert not set(m.ids_keep[i][~valid[i]].tolist()) & visible  # padding points at masked patches
        assert valid[i, : keep[i]].all() and not valid[i, keep[i]:].any()  # visible first, then padding
        weighted = set(m.ids_masked[i][m.weights[i] == 1].tolist())
        assert weighted == set(range(64)) - visible  # the weighted rows are exactly the masked patches
    tokens = torch.arange(64).expand(5, 64)
    shuffled = torch.argsort(m.ids_restore, dim=1)
    assert torch.equal(torch.gather(torch.gather(tokens, 1, shuffled), 1, m.ids_restore), tokens)


def test_per_sample_with_equal_ratios_is_the_batch_masking_without_padding():
    a = draw_mask(4, 64, 0.6, generator=torch.Generator().manual_seed(3))
    b = draw_mask(4, 64, torch.full((4,), 0.6), generator=torch.Generator().manual_seed(3))
    assert b.keep_valid is None and b.weights is None  # no padding, no key mask: the fast path
    assert all(torch.equal(x, y) for x, y in zip(a[:4], b[:4], strict=True))
