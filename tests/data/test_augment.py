from __future__ import annotations

import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from maelab.config import AugConfig, load_config
from maelab.data.augment import (
    SEED_OPS,
    Extras,
    adjust_brightness,
    adjust_contrast,
    affine_grid,
    apply_extras,
    augment,
    draw_extras,
    eval_transform,
    extras_affine,
    keras_boxes,
    resized_crop,
    rrc_boxes,
    to_float,
)
from maelab.errors import ConfigError

augment_module = importlib.import_module("maelab.data.augment")  # the module (maelab.data re-exports the function)


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
    for preset in ("mae", "keras", "seed3", "seed5"):
        cfg = AugConfig(preset=preset)
        a = augment(imgs, cfg, 32, torch.Generator(device="cuda").manual_seed(0))
        b = augment(imgs, cfg, 32, torch.Generator(device="cuda").manual_seed(0))
        assert a.device.type == "cuda" and a.shape == (64, 3, 32, 32) and torch.equal(a, b)
    with pytest.raises(ValueError, match="generator is on cpu"):
        augment(imgs, AugConfig(), 32, _gen())


# --- the report's extra augmentations: seed3 / seed5 -------------------------------------------------------------

ZERO = dict(rotation=0.0, zoom=0.0, contrast=0.0, brightness=0.0, translation=0.0)
NO_FLIP = torch.zeros(1, dtype=torch.bool)


def _pattern(h: int = 8, w: int = 8) -> torch.Tensor:
    """``[1, 1, h, w]`` asymmetric test image: distinct values, so any wrong turn or mirror shows."""
    return torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w) / (h * w)


def _extras(**values: float) -> Extras:
    params = Extras.identity(1)
    for name, value in values.items():
        setattr(params, name, torch.tensor([value]))
    return params


def _warp(x: torch.Tensor, fill: str = "zeros", flip: bool = False, **values: float) -> torch.Tensor:
    """Apply forced extras to ``x: [1, C, S, S]`` with the whole-image box (no crop)."""
    s = x.shape[-1]
    box = torch.tensor([[0.0, 0.0, s, s]])
    return apply_extras(x, box, torch.tensor([flip]), _extras(**values), s, fill)


@pytest.mark.parametrize("base, size", [("keras", 48), ("mae", 32)])
@pytest.mark.parametrize("fill", ["reflect", "border"])
@pytest.mark.parametrize("preset", ["seed3", "seed5"])
def test_zero_strength_is_exactly_the_base_preset(preset: str, base: str, size: int, fill: str) -> None:
    # The base draws (box, flip) come first and the extras after, so the same generator state gives the same
    # base; zero factors give an identity extra matrix (exact in float) and skip contrast/brightness. With
    # fill=zeros the bilinear taps half a pixel outside the image read 0 instead of the edge, so only
    # reflect/border (the base's own padding, identical inside the image) are bitwise equal.
    imgs = _imgs(8)
    seeded = augment(imgs, AugConfig(preset=preset, base=base, fill=fill, **ZERO), size, _gen(5))
    plain = augment(imgs, AugConfig(preset=base), size, _gen(5))
    assert torch.equal(seeded, plain)
    strong = augment(imgs, AugConfig(preset=preset, base=base, fill=fill), size, _gen(5))
    assert (strong - plain).abs().amax(dim=(1, 2, 3)).min() > 0.05  # and at full strength every sample changes


def test_drawn_parameters_stay_in_range_and_differ_between_samples() -> None:
    n = 2000
    p = draw_extras(n, AugConfig(preset="seed5"), SEED_OPS["seed5"], _gen(), torch.device("cpu"))
    bounds = {"angle": 0.15 * 2 * math.pi, "tx": 0.1, "ty": 0.1, "brightness": 0.2}
    for name, bound in bounds.items():
        v = getattr(p, name)
        assert v.abs().max() <= bound + 1e-6 and v.min() < -0.9 * bound and v.max() > 0.9 * bound, name
        assert len(torch.unique(v)) == n, name
    for name in ("zoom", "contrast"):
        v = getattr(p, name)
        assert (v >= 0.8 - 1e-6).all() and (v <= 1.2 + 1e-6).all() and v.min() < 0.82 and v.max() > 1.18, name
        assert len(torch.unique(v)) > 0.99 * n, name  # 1 + u rounds in float32: a rare collision is fine
    assert not torch.equal(p.tx, p.ty)


def test_seed3_turns_off_brightness_and_translation_and_shares_draws_with_seed5() -> None:
    cpu = torch.device("cpu")
    p3 = draw_extras(50, AugConfig(preset="seed3"), SEED_OPS["seed3"], _gen(7), cpu)
    p5 = draw_extras(50, AugConfig(preset="seed5"), SEED_OPS["seed5"], _gen(7), cpu)
    assert p3.brightness is None and not p3.tx.any() and not p3.ty.any()
    assert torch.equal(p3.angle, p5.angle) and torch.equal(p3.zoom, p5.zoom) and torch.equal(p3.contrast, p5.contrast)
    assert p5.brightness is not None and p5.brightness.abs().min() > 0 and p5.tx.abs().min() > 0


def test_op_probabilities() -> None:
    cfg = AugConfig(preset="seed5", p_rotation=0.3, p_zoom=0.0, p_contrast=1.0, p_brightness=0.5, p_translation=0.7)
    p = draw_extras(4000, cfg, SEED_OPS["seed5"], _gen(), torch.device("cpu"))
    assert 0.26 < (p.angle != 0).float().mean() < 0.34
    assert torch.equal(p.zoom, torch.ones(4000))
    assert (p.contrast != 1).all()
    assert 0.46 < (p.brightness != 0).float().mean() < 0.54
    assert 0.66 < (p.tx != 0).float().mean() < 0.74 and torch.equal(p.tx != 0, p.ty != 0)  # one draw for the shift


@pytest.mark.parametrize("fill", ["reflect", "zeros", "border"])
def test_plus_90_degrees_is_counter_clockwise_like_rot90(fill: str) -> None:
    # Keras: a positive factor rotates counter-clockwise; torch.rot90(k=1, dims=(-2, -1)) does too on [H, W]
    # (the top-right corner goes to the top-left). A quarter turn maps pixel centres onto pixel centres.
    x = _pattern()
    assert (_warp(x, fill, angle=math.pi / 2) - torch.rot90(x, 1, dims=(-2, -1))).abs().max() < 1e-5
    assert (_warp(x, fill, angle=-math.pi / 2) - torch.rot90(x, -1, dims=(-2, -1))).abs().max() < 1e-5
    dot = torch.zeros(1, 1, 9, 9)
    dot[0, 0, 1, 7] = 1  # a bright pixel up and to the right of the centre (4, 4) ...
    turned = _warp(dot, fill, angle=math.pi / 2)
    assert turned[0, 0, 1, 1] > 0.999 and turned.sum() < 1.001  # ... lands up and to the left


def test_rotation_keeps_pixel_distances_when_height_and_width_differ() -> None:
    angle = 0.3
    theta = extras_affine(_extras(angle=angle), 16, 32)[0]  # output 16 high, 32 wide
    q = torch.tensor([0.25, -0.5, 1.0])  # a normalized output point
    p = theta @ q
    to_px = torch.tensor([32 / 2, 16 / 2])
    q_px, p_px = q[:2] * to_px, p[:2] * to_px
    assert torch.allclose(p_px.norm(), q_px.norm(), atol=1e-5)
    # the sampled point is the output point turned by +angle in y-down pixels (content turns the other way)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    assert torch.allclose(p_px, rot @ q_px, atol=1e-5)


def test_zoom_below_one_zooms_in_and_above_one_zooms_out() -> None:
    x = to_float(_imgs(1))
    zoomed_in = _warp(x, "reflect", zoom=0.5)  # samples the central half: the centre 16 x 16 box, enlarged
    centre = resized_crop(x, torch.tensor([[8.0, 8.0, 16.0, 16.0]]), NO_FLIP, 32)
    assert (zoomed_in - centre).abs().max() < 1e-5
    zoomed_out = _warp(x, "zeros", zoom=2.0)  # the whole image shrunk into the central 16 x 16, zeros around
    assert zoomed_out[..., :, :8].abs().max() == 0 and zoomed_out[..., :8, :].abs().max() == 0
    expected = F.avg_pool2d(x, 2)  # 2x downsampling with bilinear taps between pixel pairs = 2 x 2 means
    assert (zoomed_out[..., 8:24, 8:24] - expected).abs().max() < 1e-5


def test_translation_moves_content_right_and_down() -> None:
    x = _pattern()
    out = _warp(x, "zeros", tx=0.25, ty=-0.125)  # 2 px right, 1 px up on 8 x 8
    assert torch.allclose(out[..., :7, 2:], x[..., 1:, :6], atol=1e-6)
    assert out[..., :, :2].abs().max() == 0 and out[..., 7, :].abs().max() == 0


def test_one_warp_composes_crop_flip_then_rotation_zoom_translation_in_keras_order(monkeypatch) -> None:
    x = _pattern(16, 16)
    box = torch.tensor([[4.0, 0.0, 8.0, 8.0]])  # crop rows 0..8, columns 4..12
    calls = []
    real = F.grid_sample
    monkeypatch.setattr(augment_module.F, "grid_sample", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = apply_extras(x, box, torch.tensor([True]), _extras(angle=math.pi / 2, tx=0.25), 8, "zeros")
    assert len(calls) == 1  # one resampling for crop + flip + rotation + translation
    step = torch.rot90(torch.flip(x[..., 0:8, 4:12], dims=[-1]), 1, dims=(-2, -1))  # crop, flip, rotate
    # translation by 2 px right comes last; the 2 columns it uncovers show the image around the crop box
    assert torch.allclose(out[..., 2:], step[..., :6], atol=1e-5)


def test_contrast_and_brightness_match_a_hand_computation() -> None:
    x = torch.tensor([[0.2, 0.4], [0.6, 0.8]]).expand(1, 2, 2, 2).clone()
    x[0, 1] = torch.tensor([[0.0, 0.1], [0.1, 0.2]])  # second channel, mean 0.1
    out = adjust_contrast(x, torch.tensor([1.5]))
    assert torch.allclose(out[0, 0], torch.tensor([[0.05, 0.35], [0.65, 0.95]]))  # (x - 0.5) * 1.5 + 0.5
    assert torch.allclose(out[0, 1], torch.tensor([[0.0, 0.1], [0.1, 0.25]]))  # -0.05 clipped to 0
    out = adjust_brightness(x, torch.tensor([0.3]))
    assert torch.allclose(out[0, 0], torch.tensor([[0.5, 0.7], [0.9, 1.0]]))  # 1.1 clipped to 1
    two = torch.stack([x[0], x[0]])  # per-sample factors
    out = adjust_contrast(two, torch.tensor([1.0, 0.0]))
    assert torch.allclose(out[0], x[0]) and torch.allclose(out[1, 0], torch.full((2, 2), 0.5))


def test_seed3_never_changes_brightness_and_seed5_does() -> None:
    imgs = _imgs(8)
    geometry_off = dict(rotation=0.0, zoom=0.0, contrast=0.0, translation=0.0)
    base = augment(imgs, AugConfig(preset="keras"), 48, _gen(3))
    seed3 = augment(imgs, AugConfig(preset="seed3", brightness=0.5, **geometry_off), 48, _gen(3))
    assert torch.equal(seed3, base)  # brightness factor set, but the preset keeps the op off
    seed5 = augment(imgs, AugConfig(preset="seed5", brightness=0.2, **geometry_off), 48, _gen(3))
    inside = (base > 0.25) & (base < 0.75)  # where no clipping can happen
    shift = torch.stack([(seed5 - base)[i][inside[i]].mean() for i in range(8)])
    spread = torch.stack([(seed5 - base)[i][inside[i]].std() for i in range(8)])
    assert shift.abs().max() <= 0.2 + 1e-6 and shift.abs().min() > 0 and len(torch.unique(shift)) == 8
    assert spread.max() < 1e-6  # a constant delta per image


def test_seeded_extras_are_reproducible_per_sample_and_in_range() -> None:
    imgs = _imgs(1).expand(8, -1, -1, -1)
    cfg = AugConfig(preset="seed5")
    a = augment(imgs, cfg, 48, _gen(1))
    assert a.shape == (8, 3, 48, 48) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, augment(imgs, cfg, 48, _gen(1)))
    assert not torch.equal(a, augment(imgs, cfg, 48, _gen(2)))
    assert len(torch.unique(a.flatten(1), dim=0)) == 8


def test_fill_modes_differ_outside_the_image() -> None:
    x = to_float(_imgs(1))
    outs = {fill: _warp(x, fill, zoom=1.5) for fill in ("reflect", "zeros", "border")}
    assert outs["zeros"][..., 0, 0].abs().max() == 0
    assert torch.allclose(outs["border"][..., 0, 0], x[..., 0, 0], atol=1e-6)  # the corner pixel, repeated
    assert not torch.allclose(outs["reflect"], outs["border"])


@pytest.mark.parametrize("override, words", [
    ("aug.preset=seed7", "aug.preset"), ("aug.base=none", "aug.base"), ("aug.fill=wrap", "aug.fill"),
    ("aug.rotation=0.6", "aug.rotation"), ("aug.zoom=1.0", "aug.zoom"), ("aug.contrast=-0.1", "aug.contrast"),
    ("aug.brightness=1.5", "aug.brightness"), ("aug.translation=2", "aug.translation"),
    ("aug.p_zoom=1.2", "aug.p_zoom"), ("aug.p_brightness=-1", "aug.p_brightness"),
])
def test_bad_augmentation_settings_are_one_clear_error(override: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)


def test_augmentation_settings_load_from_overrides() -> None:
    cfg = load_config(None, ["aug.preset=seed5", "aug.base=mae", "aug.rotation=0.1", "aug.p_translation=0.5",
                             "aug.fill=zeros"])
    assert (cfg.aug.preset, cfg.aug.base, cfg.aug.rotation, cfg.aug.p_translation, cfg.aug.fill) == \
        ("seed5", "mae", 0.1, 0.5, "zeros")
    assert (cfg.aug.zoom, cfg.aug.contrast, cfg.aug.brightness, cfg.aug.translation) == (0.2, 0.2, 0.2, 0.1)


def test_affine_grid_matches_torch() -> None:
    theta = torch.randn(5, 2, 3, generator=_gen())
    for h, w in ((48, 48), (7, 12)):
        expected = F.affine_grid(theta, [5, 3, h, w], align_corners=False)
        assert torch.allclose(affine_grid(theta, h, w), expected, atol=1e-6)
