"""Batched augmentation on the device, with per-sample random parameters from a passed generator (drawn by
:mod:`maelab.data.augment_draws`).

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

import torch
import torch.nn.functional as F
from torch import Tensor

from maelab.config import AugConfig
from maelab.data.augment_draws import (  # noqa: F401  (re-exported: the draws were part of this module)
    SEED_OPS,
    AugDraws,
    Extras,
    draw_augment,
    draw_extras,
    keras_boxes,
    rrc_boxes,
)
from maelab.shard import WHOLE, Shard

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
    _, h, w, _ = imgs.shape
    draws = draw_augment(len(imgs), h, w, cfg, out_size, generator, imgs.device, shard)
    return apply_augment(imgs, draws, cfg, out_size)


def apply_augment(imgs: Tensor, draws: AugDraws | None, cfg: AugConfig, out_size: int) -> Tensor:
    """Augment ``imgs: [N, H, W, 3] uint8`` with parameters already drawn (:func:`draw_augment`; None: the preset
    ``none``) -> ``[N, 3, out_size, out_size] float32`` in [0, 1]. No random number is drawn here."""
    if draws is None:
        return eval_transform(imgs, out_size)
    if draws.extras is None:
        return resized_crop(to_float(imgs), draws.boxes, draws.flip, out_size)
    return apply_extras(to_float(imgs), draws.boxes, draws.flip, draws.extras, out_size, cfg.fill)


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

    Each grid coordinate is ``a * x + (b * y + c)`` over the pixel-centre coordinates: the values maelab's
    augmentation has always had (torch's differ by ~1e-7, which would change every run's batches slightly, and
    with them the runs that a resume or a pinned ablation compares bit for bit). Stacked rather than written into
    ``out=`` slices (3x faster on the CPU, 1.5 ms per 256 images) because torch.compile cannot trace ``out=``
    slices (``train.compile_scope=step``).
    """
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1
    coords = [(row[:, 0:1] * xs).unsqueeze(1) + (row[:, 1:2] * ys + row[:, 2:3]).unsqueeze(2)
              for row in theta.unbind(1)]
    return torch.stack(coords, dim=-1)


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
