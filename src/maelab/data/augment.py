"""Batched augmentation on the device, with per-sample random parameters from a passed generator.

Every crop (and flip) is expressed as a per-sample affine map from the output image to a box of
the input, and applied in ONE resampling (``affine_grid`` + ``grid_sample``, bilinear,
``align_corners=False``, border padding). A box of the whole image with no flip is the identity.
Boxes are continuous (sub-pixel), unlike torchvision's integer boxes; the resampling does not
antialias, which only matters when a box is larger than the output (never at 32 px in, 32 px out).
Outputs are float32 in [0, 1]; normalization is the engine's job.

The report's presets ``seed3`` (base + rotation, zoom, contrast) and ``seed5`` (+ brightness,
translation) compose the base crop/flip box, the rotation, the zoom and the translation into ONE
affine map per sample and resample once, with ``cfg.fill`` padding; contrast and brightness follow
on the warped image. Keras applies each layer as its own resampling of the (48 px) crop, so where
the warp reaches past the crop box maelab shows the real image around it (and fills only past the
original image), not a reflection of the crop. Sign conventions follow Keras: a positive angle
rotates the content counter-clockwise, a zoom scale above 1 zooms out, a positive shift moves the
content right/down. Draw order: the base's (box, flip), then one ``[N, 11]`` uniform draw for the
extras, whatever the preset and factors; so with every factor at 0, seed3/seed5 give exactly the
base preset's batch for the same generator state, and seed3 and seed5 share rotation, zoom and contrast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
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
PADDING = {"reflect": "reflection", "zeros": "zeros", "border": "border"}  # aug.fill -> grid_sample padding_mode


def to_float(imgs: Tensor) -> Tensor:
    """``imgs: [N, H, W, 3] uint8`` -> ``[N, 3, H, W] float32`` in [0, 1] (contiguous)."""
    return imgs.permute(0, 3, 1, 2).to(dtype=torch.float32, memory_format=torch.contiguous_format) / 255


def eval_transform(imgs: Tensor, out_size: int) -> Tensor:
    """Deterministic evaluation input: ``imgs: [N, H, W, 3] uint8`` -> ``[N, 3, out, out] float32`` in [0, 1].

    The image as floats, bilinearly resized (``align_corners=False``) when ``H, W != out_size``.
    """
    x = to_float(imgs)
    if x.shape[-2:] != (out_size, out_size):
        x = F.interpolate(x, size=(out_size, out_size), mode="bilinear", align_corners=False)
    return x


def augment(imgs: Tensor, cfg: AugConfig, out_size: int, generator: torch.Generator, shard: Shard = WHOLE) -> Tensor:
    """Augment a batch: ``imgs: [N, H, W, 3] uint8`` -> ``[N, 3, out_size, out_size] float32`` in [0, 1].

    Presets: ``none`` (= ``eval_transform``), ``mae`` (random resized crop with area fraction in
    ``[crop_scale_min, crop_scale_max]`` and aspect ratio in [3/4, 4/3], then flip with probability
    ``cfg.flip``), ``keras`` (resize to ``round(out_size * 52 / 48)``, random crop ``out_size``, flip),
    ``seed3``/``seed5`` (the ``cfg.base`` preset, then the report's extra ops: see the module docstring).
    ``generator`` must be on the device of ``imgs``; each sample draws its own parameters. Under torchrun,
    ``shard`` names this rank's rows of the global batch: the parameters are drawn for the whole global batch and
    this rank keeps its rows (W ranks augment exactly as one process with the global batch).
    """
    if cfg.preset == "none":
        return eval_transform(imgs, out_size)
    if generator.device.type != imgs.device.type:
        raise ValueError(f"the generator is on {generator.device} but the images are on {imgs.device}")
    _, h, w, _ = imgs.shape
    n = shard.global_size(len(imgs))  # parameters are drawn for the global batch; this shard keeps its rows
    base = cfg.base if cfg.preset in SEED_OPS else cfg.preset
    if base == "mae":
        boxes = rrc_boxes(n, h, w, (cfg.crop_scale_min, cfg.crop_scale_max), generator, imgs.device)
    elif base == "keras":
        boxes = keras_boxes(n, h, w, out_size, generator, imgs.device)
    else:
        raise ValueError(f"unknown augmentation preset {cfg.preset!r}")
    flip = torch.rand(n, generator=generator, device=imgs.device) < cfg.flip
    boxes, flip = shard.rows(boxes), shard.rows(flip)
    if cfg.preset not in SEED_OPS:
        return resized_crop(to_float(imgs), boxes, flip, out_size)
    params = draw_extras(n, cfg, SEED_OPS[cfg.preset], generator, imgs.device).rows(shard)
    return apply_extras(to_float(imgs), boxes, flip, params, out_size, cfg.fill)


def resized_crop(x: Tensor, boxes: Tensor, flip: Tensor, out_size: int) -> Tensor:
    """Crop each image to its box, resample it to ``out_size`` and mirror it where ``flip``: one warp.

    ``x: [N, C, H, W] float``, ``boxes: [N, 4]`` as (x0, y0, width, height) in pixels of the input
    (pixel edges: the whole image is (0, 0, W, H)), ``flip: [N] bool`` -> ``[N, C, out, out]``.
    """
    theta = box_affine(boxes, x.shape[-2], x.shape[-1], flip).to(x.dtype)
    grid = affine_grid(theta, out_size, out_size)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def affine_grid(theta: Tensor, h: int, w: int) -> Tensor:
    """``F.affine_grid(theta, [N, C, h, w], align_corners=False)``, by broadcasting: ``[N, 2, 3]`` -> ``[N, h, w, 2]``.

    Each grid coordinate is ``a * x + (b * y + c)`` over the pixel-centre coordinates; on CPU this is
    2-3x faster than torch's batched matmul over a materialized base grid (same values to ~1e-6).
    """
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1
    grid = torch.empty(theta.shape[0], h, w, 2, device=theta.device, dtype=theta.dtype)
    for k in range(2):
        row = theta[:, k]
        torch.add((row[:, 0:1] * xs).unsqueeze(1), (row[:, 1:2] * ys + row[:, 2:3]).unsqueeze(2), out=grid[..., k])
    return grid


def box_affine(boxes: Tensor, h: int, w: int, flip: Tensor) -> Tensor:
    """``boxes: [N, 4]`` (x0, y0, bw, bh) pixels, ``flip: [N] bool`` -> ``theta: [N, 2, 3]`` for ``affine_grid``.

    Maps normalized output coordinates [-1, 1] onto the box; a flip negates the x scale.
    """
    x0, y0, bw, bh = boxes.unbind(1)
    sign = 1 - 2 * flip.to(boxes.dtype)
    zero = torch.zeros_like(x0)
    row_x = torch.stack([sign * bw / w, zero, 2 * (x0 + bw / 2) / w - 1], dim=1)
    row_y = torch.stack([zero, bh / h, 2 * (y0 + bh / 2) / h - 1], dim=1)
    return torch.stack([row_x, row_y], dim=1)


def rrc_boxes(n: int, h: int, w: int, scale: tuple[float, float], generator: torch.Generator,
              device: torch.device) -> Tensor:
    """Random resized crop boxes, ``[n, 4]`` (x0, y0, bw, bh) in pixels, as torchvision draws them, batched.

    Area fraction uniform in ``scale``, aspect ratio log-uniform in [3/4, 4/3]; the first of
    ``ATTEMPTS`` draws that fits the image is used, else torchvision's centre-crop fallback.
    """
    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device=device, dtype=torch.float32)

    area = scale[0] + (scale[1] - scale[0]) * rand(n, ATTEMPTS)
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * rand(n, ATTEMPTS))
    bw = torch.sqrt(area * h * w * aspect)
    bh = torch.sqrt(area * h * w / aspect)
    fits = (bw <= w) & (bh <= h)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first box that fits
    bw, bh = bw.gather(1, first).squeeze(1), bh.gather(1, first).squeeze(1)
    fw, fh = _fallback_size(h, w)
    ok = fits.any(dim=1)
    bw, bh = torch.where(ok, bw, torch.full_like(bw, fw)), torch.where(ok, bh, torch.full_like(bh, fh))
    pos = torch.where(ok.unsqueeze(1), rand(n, 2), 0.5)  # the fallback box is centred
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
    resized = round(out_size * KERAS_RESIZE / KERAS_CROP)
    offsets = torch.randint(0, resized - out_size + 1, (n, 2), generator=generator, device=device).float()
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
    u = torch.rand(n, len(EXTRA_DRAWS) + 5, generator=generator, device=device, dtype=torch.float32)
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


def apply_extras(x: Tensor, boxes: Tensor, flip: Tensor, params: Extras, out_size: int,
                 fill: str = "reflect") -> Tensor:
    """Base crop/flip + rotation, zoom, translation in ONE warp, then contrast and brightness.

    ``x: [N, C, H, W] float`` in [0, 1], ``boxes: [N, 4]`` and ``flip: [N] bool`` as in ``resized_crop``,
    ``params``: per-sample ``Extras`` (tests force them here), ``fill``: reflect | zeros | border
    -> ``[N, C, out_size, out_size]`` in [0, 1].
    """
    base = _homogeneous(box_affine(boxes, x.shape[-2], x.shape[-1], flip))
    theta = (base @ extras_affine(params, out_size, out_size))[:, :2].to(x.dtype)
    grid = affine_grid(theta, out_size, out_size)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode=PADDING[fill], align_corners=False)
    if params.contrast is not None:
        out = adjust_contrast(out, params.contrast)
    if params.brightness is not None:
        out = adjust_brightness(out, params.brightness)
    return out


def extras_affine(params: Extras, h: int, w: int) -> Tensor:
    """``[N, 3, 3]`` map from normalized output coordinates to normalized coordinates of an ``h x w`` image.

    In pixels about the centre (y down) a sample at output point q reads the image at
    ``Rot(angle) @ (zoom * (q - shift))`` with ``Rot = [[cos, -sin], [sin, cos]]`` (content turns
    counter-clockwise for a positive angle), as Keras' rotation, then zoom, then translation
    layers. Normalized coordinates are pixels / (size / 2), so the rotation is conjugated by
    ``diag(w, h)`` to stay a rotation in pixels when ``h != w``.
    """
    cos, sin, z = torch.cos(params.angle), torch.sin(params.angle), params.zoom
    m00, m01 = z * cos, -z * sin * (h / w)
    m10, m11 = z * sin * (w / h), z * cos
    dx, dy = 2 * params.tx, 2 * params.ty  # shift in normalized units (the image spans 2)
    zero, one = torch.zeros_like(z), torch.ones_like(z)
    rows = [
        torch.stack([m00, m01, -(m00 * dx + m01 * dy)], dim=1),
        torch.stack([m10, m11, -(m10 * dx + m11 * dy)], dim=1),
        torch.stack([zero, zero, one], dim=1),
    ]
    return torch.stack(rows, dim=1)


def _homogeneous(theta: Tensor) -> Tensor:
    """``theta: [N, 2, 3]`` -> ``[N, 3, 3]`` with the row (0, 0, 1) appended."""
    last = torch.zeros_like(theta[:, :1])
    last[..., 2] = 1
    return torch.cat([theta, last], dim=1)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Keras RandomContrast: ``(x - mean) * factor + mean`` per image and channel, clipped to [0, 1].

    ``x: [N, C, H, W]``, ``factor: [N]`` -> ``[N, C, H, W]``.
    """
    f = factor.view(-1, 1, 1, 1).to(x.dtype)
    return (x * f).add_(x.mean(dim=(-2, -1), keepdim=True) * (1 - f)).clamp_(0, 1)  # x f + mean (1 - f)


def adjust_brightness(x: Tensor, delta: Tensor) -> Tensor:
    """Keras RandomBrightness on [0, 1] images: ``x + delta``, clipped. ``x: [N, C, H, W]``, ``delta: [N]``."""
    return (x + delta.view(-1, 1, 1, 1).to(x.dtype)).clamp_(0, 1)
