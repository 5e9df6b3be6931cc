"""Attention maps: where the encoder's cls token looks, per head of its last block, over fixed sample images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import Tensor

from maelab.data.normalize import Normalizer
from maelab.models import MAE
from maelab.viz.plots import image_grid
from maelab.viz.samples import to_numpy

OVERLAY = 0.55  # the heat map's weight over the image
CMAP = "viridis"
SCALE_LABEL = "cls attention, scaled per map\n(0: least, 1: most attended)"


@torch.no_grad()
def cls_attention_maps(model: MAE, original: Tensor, norm: Normalizer) -> Tensor:
    """The last block's attention of the cls token to each patch, per head: ``original`` [N, 3, H, W] pixels
    in [0, 1] -> [N, heads, grid, grid] float32 (the patch part of each head's cls row; it sums to 1 over the
    patches, less what goes to the cls token itself and any registers)."""
    device = next(model.parameters()).device
    encoder = model.encoder
    attention = encoder.forward_attention(norm(original.to(device)))  # [N, heads, T, T]
    grid = model.spec.grid
    patches = attention[:, :, 0, 1 + encoder.num_registers:]  # the cls query, the patch keys
    return patches.reshape(*patches.shape[:2], grid, grid).cpu()


def overlays(original: Tensor, maps: Tensor) -> list[np.ndarray]:
    """One [N, H, W, 3] image per head: each map min-max scaled per image, upsampled (nearest: one square per
    patch) and drawn with ``CMAP`` over the greyed image."""
    n, heads = maps.shape[:2]
    size = original.shape[-1]
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    scaled = (maps - lo) / (hi - lo).clamp_min(1e-12)
    big = F.interpolate(scaled, size=(size, size), mode="nearest")  # [N, heads, H, W]
    grey = to_numpy(original).mean(axis=-1, keepdims=True)  # [N, H, W, 1]
    cmap = colormaps[CMAP]
    return [(1 - OVERLAY) * grey + OVERLAY * cmap(big[:, h].numpy())[..., :3] for h in range(heads)]


def attention_figure(original: Tensor, maps: Tensor, names: Sequence[str], title: str) -> Figure:
    """attention.png: the images (``original`` [N, 3, H, W] in [0, 1], one column each, titled ``names``), the
    mean over heads of the cls token's attention (``maps`` [N, heads, g, g]) as an overlay, then one overlay row
    per head, and a colorbar of the overlays' scale."""
    heads = maps.shape[1]
    rows = [("original", to_numpy(original)),
            (f"mean of the\n{heads} heads", overlays(original, maps.mean(dim=1, keepdim=True))[0])]
    rows += [(f"head {h}", img) for h, img in enumerate(overlays(original, maps))]
    return image_grid(rows, names, title, colorbar=(SCALE_LABEL, CMAP))


__all__ = ["attention_figure", "cls_attention_maps", "overlays"]
