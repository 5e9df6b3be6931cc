from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from maelab.config import AugConfig
from maelab.data.augment import (
    augment,
    eval_transform,
    keras_boxes,
    resized_crop,
    rrc_boxes,
    to_float,
)


def _imgs(n: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, size, size, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _full_boxes(n: int, h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.tensor([[0.0, 0.0, w, h]]).expand(n, 4)


def test_to_float_layout_and_range() -> None:
    imgs = _imgs()
    x = to_float(imgs)
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert torch.equal(x[2, 1, 4, 7], imgs[2, 4, 7, 1].float() / 255)


def test_none_preset_is_the_exact_image_when_sizes_match() -> None:
    imgs = _imgs()
    out = augment(imgs, AugConfig(preset="none"), 32, _gen())
    assert torch.equal(out, imgs.permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(eval_transform(imgs, 32), out)


def test_none_preset_resizes_bilinearly() -> None:
    imgs = _imgs()
    out = augment(imgs, AugConfig(preset="none"), 48, _gen())
    expected = F.interpolate(to_float(imgs), size=(48, 48), mode="bilinear", align_corners=False)
    assert out.shape == (6, 3, 48, 48) and torch.allclose(out, expected)


def test_whole_image_box_without_flip_is_the_identity() -> None:
    x = to_float(_imgs())
    out = resized_crop(x, _full_boxes(6), torch.zeros(6, dtype=torch.bool), 32)
    assert (out - x).abs().max() < 1e-5
    cfg = AugConfig(preset="mae", crop_scale_min=1.0, crop_scale_max=1.0, flip=0.0)
    assert (augment(_imgs(), cfg, 32, _gen()) - x).abs().max() < 1e-5


def test_whole_image_box_with_flip_mirrors_left_right() -> None:
    x = to_float(_imgs())
    out = resized_crop(x, _full_boxes(6), torch.ones(6, dtype=torch.bool), 32)
    assert (out - torch.flip(x, dims=[-1])).abs().max() < 1e-5
    cfg = AugConfig(preset="mae", crop_scale_min=1.0, crop_scale_max=1.0, flip=1.0)
    assert (augment(_imgs(), cfg, 32, _gen()) - torch.flip(x, dims=[-1])).abs().max() < 1e-5


def test_box_crop_matches_slicing_for_an_integer_box() -> None:
    x = to_float(_imgs(2))
    boxes = torch.tensor([[4.0, 8.0, 16.0, 16.0], [0.0, 16.0, 16.0, 16.0]])
    out = resized_crop(x, boxes, torch.zeros(2, dtype=torch.bool), 16)
    assert (out[0] - x[0, :, 8:24, 4:20]).abs().max() < 1e-5
    assert (out[1] - x[1, :, 16:32, 0:16]).abs().max() < 1e-5


def test_flip_probability() -> None:
    img = _imgs(1).expand(400, -1, -1, -1)
    x = to_float(img[:1])
    out = augment(img, AugConfig(preset="mae", crop_scale_min=1.0, crop_scale_max=1.0, flip=0.5), 32, _gen())
    flipped = (out - torch.flip(x, dims=[-1])).flatten(1).abs().amax(1) < 1e-5
    same = (out - x).flatten(1).abs().amax(1) < 1e-5
    assert bool((flipped ^ same).all())
    assert 0.4 < flipped.float().mean().item() < 0.6


@pytest.mark.parametrize("preset", ["mae", "keras"])
def test_seeded_per_sample_and_in_range(preset: str) -> None:
    cfg = AugConfig(preset=preset)
    imgs = _imgs(1).expand(8, -1, -1, -1)  # eight copies of one image
    a = augment(imgs, cfg, 32, _gen(1))
    assert a.shape == (8, 3, 32, 32) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, augment(imgs, cfg, 32, _gen(1)))
    assert not torch.equal(a, augment(imgs, cfg, 32, _gen(2)))
    distinct = len(torch.unique(a.flatten(1), dim=0))
    # every copy draws its own crop; keras has only 4 x 4 offsets x 2 flips at 32 px, so a few may coincide
    assert distinct == 8 if preset == "mae" else distinct >= 5


def test_keras_preset_is_resize_then_integer_crop() -> None:
    imgs = _imgs(16)
    boxes = keras_boxes(16, 32, 32, 48, _gen(3), torch.device("cpu"))
    out = resized_crop(to_float(imgs), boxes, torch.zeros(16, dtype=torch.bool), 48)
    big = F.interpolate(to_float(imgs), size=(52, 52), mode="bilinear", align_corners=False)
    offsets = (boxes[:, :2] * 52 / 32).round().long()
    assert set(offsets.flatten().tolist()) <= set(range(5)) and len(set(offsets.flatten().tolist())) > 1
    for i, (ox, oy) in enumerate(offsets.tolist()):
        assert (out[i] - big[i, :, oy:oy + 48, ox:ox + 48]).abs().max() < 1e-5


def test_keras_preset_output_size() -> None:
    out = augment(_imgs(), AugConfig(preset="keras"), 48, _gen())
    assert out.shape == (6, 3, 48, 48) and out.min() >= 0 and out.max() <= 1


def test_random_resized_crop_boxes_follow_the_distribution() -> None:
    boxes = rrc_boxes(4000, 32, 32, (0.2, 1.0), _gen(), torch.device("cpu"))
    x0, y0, bw, bh = boxes.unbind(1)
    area, aspect = bw * bh / 1024, bw / bh
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + bw <= 32 + 1e-4).all() and (y0 + bh <= 32 + 1e-4).all()
    assert (area >= 0.2 - 1e-5).all() and (area <= 1 + 1e-5).all()
    assert (aspect >= 3 / 4 - 1e-5).all() and (aspect <= 4 / 3 + 1e-5).all()
    assert area.min() < 0.25 and area.max() > 0.9 and aspect.min() < 0.8 and aspect.max() > 1.25


def test_rrc_fallback_is_a_centred_crop() -> None:
    boxes = rrc_boxes(50, 32, 32, (1.0, 1.0), _gen(), torch.device("cpu"))  # no random box can fit
    assert torch.equal(boxes, _full_boxes(50))
    boxes = rrc_boxes(50, 20, 40, (1.0, 1.0), _gen(), torch.device("cpu"))  # too wide: centred 4:3 box
    assert torch.allclose(boxes, torch.tensor([[40 / 2 - 20 * 4 / 3 / 2, 0.0, 20 * 4 / 3, 20.0]]).expand(50, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_device_with_a_device_generator() -> None:
    imgs = _imgs(64).cuda()
    for preset in ("mae", "keras"):
        cfg = AugConfig(preset=preset)
        a = augment(imgs, cfg, 32, torch.Generator(device="cuda").manual_seed(0))
        b = augment(imgs, cfg, 32, torch.Generator(device="cuda").manual_seed(0))
        assert a.device.type == "cuda" and a.shape == (64, 3, 32, 32) and torch.equal(a, b)
    with pytest.raises(ValueError, match="generator is on cpu"):
        augment(imgs, AugConfig(), 32, _gen())
