"""Batched augmentation on the device, with per-sample random parameters from a passed generator.

Every crop (and flip) is expressed as a per-sample affine map from the output image to a box of
the input, and applied in ONE resampling (``affine_grid`` + ``grid_sample``, bilinear,
``align_corners=False``, border padding). A box of the whole image with no flip is the identity.
Boxes are continuous (sub-pixel), unlike torchvision's integer boxes; the resampling does not
antialias, which only matters when a box is larger than the output (never at 32 px in, 32 px out).
Outputs are float32 in [0, 1]; normalization is the engine's job.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from maelab.config import AugConfig

RATIO = (3 / 4, 4 / 3)  # aspect ratios of the random resized crop (torchvision's default)
ATTEMPTS = 10  # boxes tried per sample before falling back to a centre crop (as torchvision)
KERAS_RESIZE, KERAS_CROP = 52, 48  # Keras MAE example: resize to 52, random crop 48


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


def augment(imgs: Tensor, cfg: AugConfig, out_size: int, generator: torch.Generator) -> Tensor:
    """Augment a batch: ``imgs: [N, H, W, 3] uint8`` -> ``[N, 3, out_size, out_size] float32`` in [0, 1].

    Presets: ``none`` (= ``eval_transform``), ``mae`` (random resized crop with area fraction in
    ``[crop_scale_min, crop_scale_max]`` and aspect ratio in [3/4, 4/3], then flip with probability
    ``cfg.flip``), ``keras`` (resize to ``round(out_size * 52 / 48)``, random crop ``out_size``, flip).
    ``generator`` must be on the device of ``imgs``; each sample draws its own parameters.
    """
    if cfg.preset == "none":
        return eval_transform(imgs, out_size)
    if generator.device.type != imgs.device.type:
        raise ValueError(f"the generator is on {generator.device} but the images are on {imgs.device}")
    n, h, w, _ = imgs.shape
    if cfg.preset == "mae":
        boxes = rrc_boxes(n, h, w, (cfg.crop_scale_min, cfg.crop_scale_max), generator, imgs.device)
    elif cfg.preset == "keras":
        boxes = keras_boxes(n, h, w, out_size, generator, imgs.device)
    else:
        raise ValueError(f"unknown augmentation preset {cfg.preset!r}")
    flip = torch.rand(n, generator=generator, device=imgs.device) < cfg.flip
    return resized_crop(to_float(imgs), boxes, flip, out_size)


def resized_crop(x: Tensor, boxes: Tensor, flip: Tensor, out_size: int) -> Tensor:
    """Crop each image to its box, resample it to ``out_size`` and mirror it where ``flip``: one warp.

    ``x: [N, C, H, W] float``, ``boxes: [N, 4]`` as (x0, y0, width, height) in pixels of the input
    (pixel edges: the whole image is (0, 0, W, H)), ``flip: [N] bool`` -> ``[N, C, out, out]``.
    """
    theta = box_affine(boxes, x.shape[-2], x.shape[-1], flip).to(x.dtype)
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], out_size, out_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


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
