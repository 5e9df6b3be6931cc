"""The random parameters of a batch's augmentation, drawn from a passed generator (:mod:`maelab.data.augment`
applies them).

Apart from the warps so that a step can draw all its random numbers first and hand the compiled region only
tensors (``train.compile_scope=step``): :func:`draw_augment` then :func:`maelab.data.augment.apply_augment` is
exactly :func:`maelab.data.augment.augment`. Draw order: the base's (box, flip), then one ``[N, 11]`` uniform draw
for the report's extras, whatever the preset and factors.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from maelab.config import AugConfig
from maelab.shard import WHOLE, Shard

RATIO = (3 / 4, 4 / 3)  # aspect ratios of the random resized crop (torchvision's default)
ATTEMPTS = 10  # boxes tried per sample before falling back to a centre crop (as torchvision)
KERAS_RESIZE, KERAS_CROP = 52, 48  # Keras MAE example: resize to 52, random crop 48
SEED_OPS = {  # the report's two settings: which extra ops each preset turns on
    "seed3": ("rotation", "zoom", "contrast"),
    "seed5": ("rotation", "zoom", "contrast", "brightness", "translation"),
}
EXTRA_DRAWS = ("rotation", "zoom", "tx", "ty", "contrast", "brightness")  # columns of the extras' draw, then p_*


def rrc_boxes(n: int, h: int, w: int, scale: tuple[float, float], generator: torch.Generator,
              device: torch.device) -> Tensor:
    """Random resized crop boxes, ``[n, 4]`` (x0, y0, bw, bh) in pixels, as torchvision draws them, batched.

    Area fraction uniform in ``scale``, aspect ratio log-uniform in [3/4, 4/3]; the first of
    ``ATTEMPTS`` draws that fits the image is used, else torchvision's centre-crop fallback.
    """
    return rrc_boxes_from(rrc_uniforms(n, generator, device), h, w, scale)


def rrc_uniforms(n: int, generator: torch.Generator, device: torch.device) -> list[Tensor]:
    """The random crop's uniforms, float32: area ``[n, ATTEMPTS]``, aspect ``[n, ATTEMPTS]``, position ``[n, 2]``."""
    return [torch.rand(n, *shape, generator=generator, device=device, dtype=torch.float32)
            for shape in ((ATTEMPTS,), (ATTEMPTS,), (2,))]


def rrc_boxes_from(uniforms: list[Tensor], h: int, w: int, scale: tuple[float, float]) -> Tensor:
    """:func:`rrc_boxes` from its drawn uniforms (:func:`rrc_uniforms`): arithmetic only, no random draw."""
    u_area, u_aspect, u_pos = uniforms
    area = scale[0] + (scale[1] - scale[0]) * u_area
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u_aspect)
    bw = torch.sqrt(area * h * w * aspect)
    bh = torch.sqrt(area * h * w / aspect)
    fits = (bw <= w) & (bh <= h)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first box that fits
    bw, bh = bw.gather(1, first).squeeze(1), bh.gather(1, first).squeeze(1)
    fw, fh = _fallback_size(h, w)
    ok = fits.any(dim=1)
    bw, bh = torch.where(ok, bw, torch.full_like(bw, fw)), torch.where(ok, bh, torch.full_like(bh, fh))
    pos = torch.where(ok.unsqueeze(1), u_pos, 0.5)  # the fallback box is centred
    return torch.stack([pos[:, 0] * (w - bw), pos[:, 1] * (h - bh), bw, bh], dim=1)


def _fallback_size(h: int, w: int) -> tuple[float, float]:
    """torchvision's fallback: the largest centred box whose aspect ratio is within ``RATIO``."""
    in_ratio = w / h
    if in_ratio < RATIO[0]:
        return float(w), w / RATIO[0]
    if in_ratio > RATIO[1]:
        return h * RATIO[1], float(h)
    return float(w), float(h)


def keras_boxes(n: int, h: int, w: int, out_size: int, generator: torch.Generator,
                device: torch.device) -> Tensor:
    """Boxes equal to "resize to R = round(out * 52 / 48), random crop out" (integer offsets in the resized image).

    Returns ``[n, 4]`` (x0, y0, bw, bh) in pixels of the ``h x w`` input.
    """
    return keras_boxes_from(keras_offsets(n, out_size, generator, device), h, w, out_size)


def _keras_resized(out_size: int) -> int:
    return round(out_size * KERAS_RESIZE / KERAS_CROP)


def keras_offsets(n: int, out_size: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """The Keras crop's integer offsets ``[n, 2]`` (int64) in the resized image, uniform in [0, R - out]."""
    return torch.randint(0, _keras_resized(out_size) - out_size + 1, (n, 2), generator=generator, device=device)


def keras_boxes_from(offsets: Tensor, h: int, w: int, out_size: int) -> Tensor:
    """:func:`keras_boxes` from its drawn offsets (:func:`keras_offsets`): arithmetic only."""
    resized = _keras_resized(out_size)
    offsets = offsets.float()
    bw, bh = w * out_size / resized, h * out_size / resized
    return torch.stack([offsets[:, 0] * w / resized, offsets[:, 1] * h / resized,
                        torch.full_like(offsets[:, 0], bw), torch.full_like(offsets[:, 0], bh)], dim=1)


@dataclass
class Extras:
    """Per-sample parameters of the report's extra ops, each ``[N]`` float (identity values where an op is off).

    ``angle`` radians, positive = counter-clockwise; ``zoom`` scale of the sampled region, > 1 zooms
    out; ``tx``/``ty`` shift of the content as a fraction of the width/height, positive = right/down;
    ``contrast`` factor (1 = unchanged) or None to skip the op; ``brightness`` delta in [0, 1] units
    or None to skip the op.
    """

    angle: Tensor
    zoom: Tensor
    tx: Tensor
    ty: Tensor
    contrast: Optional[Tensor] = None
    brightness: Optional[Tensor] = None

    @staticmethod
    def identity(n: int, device: torch.device | str = "cpu") -> Extras:
        """No rotation, zoom 1, no shift, no colour change, for ``n`` samples."""
        zero = torch.zeros(n, device=device)
        return Extras(angle=zero, zoom=torch.ones(n, device=device), tx=zero, ty=zero)

    def rows(self, shard: Shard) -> Extras:
        """This shard's rows of parameters drawn for the global batch."""
        return Extras(**{f.name: None if (v := getattr(self, f.name)) is None else shard.rows(v)
                         for f in dataclasses.fields(self)})


def draw_extras(n: int, cfg: AugConfig, ops: tuple[str, ...], generator: torch.Generator,
                device: torch.device) -> Extras:
    """Draw the extras for ``n`` samples with Keras' ranges; ops not in ``ops`` (or not applied) are the identity.

    Always ONE ``[n, 11]`` uniform draw (six magnitudes, then five "is it applied" draws against
    ``cfg.p_*``), whatever ``ops`` and the factors are: the generator ends in the same state, and
    the presets share their draws.
    """
    return extras_from(extras_uniforms(n, generator, device), cfg, ops)


def extras_uniforms(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """The extras' one ``[n, 11]`` float32 uniform draw: six magnitudes, then five "is it applied" draws."""
    return torch.rand(n, len(EXTRA_DRAWS) + 5, generator=generator, device=device, dtype=torch.float32)


def extras_from(u: Tensor, cfg: AugConfig, ops: tuple[str, ...]) -> Extras:
    """:func:`draw_extras` from its drawn ``[n, 11]`` uniforms: arithmetic only."""
    sym = 2 * u[:, :len(EXTRA_DRAWS)] - 1  # uniform in [-1, 1]
    applied = u[:, len(EXTRA_DRAWS):]

    def on(op: str, col: int) -> Tensor:  # [n] bool: the op is in the preset and drawn as applied
        p = getattr(cfg, f"p_{op}") if op in ops else 0.0
        return applied[:, col] < p

    angle = torch.where(on("rotation", 0), sym[:, 0] * cfg.rotation * 2 * math.pi, 0.0)
    zoom = torch.where(on("zoom", 1), 1 + sym[:, 1] * cfg.zoom, 1.0)
    shift = on("translation", 2)
    tx = torch.where(shift, sym[:, 2] * cfg.translation, 0.0)
    ty = torch.where(shift, sym[:, 3] * cfg.translation, 0.0)
    contrast = brightness = None
    if "contrast" in ops and cfg.contrast > 0 and cfg.p_contrast > 0:
        contrast = torch.where(on("contrast", 3), 1 + sym[:, 4] * cfg.contrast, 1.0)
    if "brightness" in ops and cfg.brightness > 0 and cfg.p_brightness > 0:
        brightness = torch.where(on("brightness", 4), sym[:, 5] * cfg.brightness, 0.0)
    return Extras(angle, zoom, tx, ty, contrast, brightness)


@dataclass
class AugDraws:
    """One batch's augmentation parameters (this shard's rows): ``boxes [N, 4]`` float32 (x0, y0, bw, bh) pixels of
    the input, ``flip [N]`` bool, and the report's ``extras`` (None unless the preset is seed3/seed5)."""

    boxes: Tensor
    flip: Tensor
    extras: Optional[Extras] = None


@dataclass
class AugUniforms:
    """One batch's augmentation as drawn (for the global batch), before any arithmetic: ``crop`` (mae: the
    :func:`rrc_uniforms`; keras: the ``[n, 2]`` int64 :func:`keras_offsets`), ``flip [n]`` uniform, ``extras
    [n, 11]`` uniform (seed3/seed5, else None). What a compiled step draws outside its graph, a handful of launches;
    :func:`augment_from` computes the rest inside it, the same values as :func:`draw_augment`."""

    crop: list[Tensor]
    flip: Tensor
    extras: Optional[Tensor] = None


def draw_augment(n: int, h: int, w: int, cfg: AugConfig, out_size: int, generator: torch.Generator,
                 device: torch.device | str, shard: Shard = WHOLE) -> Optional[AugDraws]:
    """Draw the parameters of ``cfg``'s augmentation for a local batch of ``n`` ``h x w`` images on ``device``:
    drawn for the global batch (``shard``), this shard's rows returned. None for ``aug.preset=none`` (no draw).

    Raises ValueError for an unknown preset or a generator on another device type than ``device``.
    """
    uniforms = draw_uniforms(shard.global_size(n), cfg, out_size, generator, device)
    return None if uniforms is None else augment_from(uniforms, h, w, cfg, out_size, shard)


def draw_uniforms(n: int, cfg: AugConfig, out_size: int, generator: torch.Generator,
                  device: torch.device | str) -> Optional[AugUniforms]:
    """The random numbers of ``cfg``'s augmentation for ``n`` images, in the draw order of the module's docstring;
    None for ``aug.preset=none``. Raises ValueError as :func:`draw_augment`."""
    if cfg.preset == "none":
        return None
    device = torch.device(device)
    if generator.device.type != device.type:
        raise ValueError(f"the generator is on {generator.device} but the images are on {device}")
    if _base(cfg) == "mae":
        crop = rrc_uniforms(n, generator, device)
    elif _base(cfg) == "keras":
        crop = [keras_offsets(n, out_size, generator, device)]
    else:
        raise ValueError(f"unknown augmentation preset {cfg.preset!r}")
    flip = torch.rand(n, generator=generator, device=device)
    extras = None
    if cfg.preset in SEED_OPS:
        extras = extras_uniforms(n, generator, device)
    return AugUniforms(crop, flip, extras)


def augment_from(uniforms: AugUniforms, h: int, w: int, cfg: AugConfig, out_size: int,
                 shard: Shard = WHOLE) -> AugDraws:
    """The augmentation's parameters from its drawn ``uniforms`` (:func:`draw_uniforms`) for ``h x w`` images:
    arithmetic only (it traces into a compiled graph); this shard's rows."""
    if _base(cfg) == "mae":
        boxes = rrc_boxes_from(uniforms.crop, h, w, (cfg.crop_scale_min, cfg.crop_scale_max))
    else:
        boxes = keras_boxes_from(uniforms.crop[0], h, w, out_size)
    flip = uniforms.flip < cfg.flip
    extras = None
    if uniforms.extras is not None:
        extras = extras_from(uniforms.extras, cfg, SEED_OPS[cfg.preset]).rows(shard)
    return AugDraws(shard.rows(boxes), shard.rows(flip), extras)


def _base(cfg: AugConfig) -> str:
    """The crop the preset uses: its own (mae, keras), or for seed3/seed5 ``aug.base``'s."""
    return cfg.base if cfg.preset in SEED_OPS else cfg.preset
