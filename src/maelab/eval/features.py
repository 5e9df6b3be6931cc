"""Frozen-encoder features: whole images (no masking), pooled to one vector per image."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from maelab.config import AugConfig
from maelab.data import augment, eval_transform
from maelab.models.vit import ViTEncoder
from maelab.shard import WHOLE, Shard


def normalize(imgs: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """imgs [N, 3, H, W] in [0, 1] -> standardised with per-channel ``mean``/``std``."""
    m = torch.tensor(mean, device=imgs.device, dtype=imgs.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=imgs.device, dtype=imgs.dtype).view(1, 3, 1, 1)
    return (imgs - m) / s


def pool_tokens(tokens: Tensor, pool: str) -> Tensor:
    """tokens [N, 1 + L, D] (cls first) -> [N, D]: the cls token, or the mean of the patch tokens."""
    return tokens[:, 0] if pool == "cls" else tokens[:, 1:].mean(dim=1)


def prepare(x_u8: Tensor, img_size: int, mean: tuple[float, ...], std: tuple[float, ...],
            aug: Optional[AugConfig] = None, generator: Optional[torch.Generator] = None,
            shard: Shard = WHOLE) -> Tensor:
    """uint8 [N, H, W, 3] -> normalised model input [N, 3, S, S] (augmented when ``aug`` is given; ``shard``:
    this rank's rows of a global batch, see :func:`maelab.data.augment`)."""
    imgs = augment(x_u8, aug, img_size, generator, shard) if aug is not None else eval_transform(x_u8, img_size)
    return normalize(imgs, mean, std)


@torch.no_grad()
def extract_features(encoder: ViTEncoder, x_u8: Tensor, img_size: int, mean: tuple[float, ...],
                     std: tuple[float, ...], pool: str = "mean", batch_size: int = 500,
                     aug: Optional[AugConfig] = None, generator: Optional[torch.Generator] = None) -> Tensor:
    """Pooled features of every image: x_u8 [N, H, W, 3] uint8 -> [N, D] float32, encoder in eval mode."""
    was_training = encoder.training
    encoder.eval()
    out = []
    for start in range(0, len(x_u8), batch_size):
        imgs = prepare(x_u8[start:start + batch_size], img_size, mean, std, aug, generator)
        out.append(pool_tokens(encoder.forward_features(imgs), pool).float())
    encoder.train(was_training)
    return torch.cat(out)
