"""Frozen-encoder features: whole images (no masking), pooled to one vector per image and layer."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor

from maelab.config import AugConfig
from maelab.data import augment, eval_transform
from maelab.data.normalize import Normalizer
from maelab.eval.protocols import FINAL, Feature
from maelab.models.vit import ViTEncoder
from maelab.progress import phase
from maelab.shard import WHOLE, Shard


def pool_tokens(tokens: Tensor, pool: str) -> Tensor:
    """tokens [N, 1 + L, D] (cls first) -> [N, D]: the cls token, or the mean of the patch tokens."""
    return tokens[:, 0] if pool == "cls" else tokens[:, 1:].mean(dim=1)


def prepare(x_u8: Tensor, img_size: int, mean: tuple[float, ...], std: tuple[float, ...],
            aug: Optional[AugConfig] = None, generator: Optional[torch.Generator] = None,
            shard: Shard = WHOLE) -> Tensor:
    """uint8 [N, H, W, 3] -> normalised model input [N, 3, S, S] (augmented when ``aug`` is given; ``shard``:
    this rank's rows of a global batch, see :func:`maelab.data.augment`)."""
    imgs = augment(x_u8, aug, img_size, generator, shard) if aug is not None else eval_transform(x_u8, img_size)
    return _normalizer(tuple(mean), tuple(std), imgs.device)(imgs)


@functools.lru_cache(maxsize=8)
def _normalizer(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> Normalizer:
    """One Normalizer per dataset and device, built once: a batch then makes no host-to-device copy (a sync on
    CUDA)."""
    return Normalizer(mean, std, device)


@torch.no_grad()
def extract_features(encoder: ViTEncoder, x_u8: Tensor, img_size: int, mean: tuple[float, ...],
                     std: tuple[float, ...], pool: str = "mean", batch_size: int = 500,
                     aug: Optional[AugConfig] = None, generator: Optional[torch.Generator] = None) -> Tensor:
    """Pooled final-normed features of every image: x_u8 [N, H, W, 3] uint8 -> [N, D] float32, encoder in eval
    mode (``extract_layers`` of the one feature ``("final", pool)``)."""
    return extract_layers(encoder, x_u8, img_size, mean, std, [(FINAL, pool)], batch_size, aug, generator)[
        (FINAL, pool)]


@torch.no_grad()
def extract_layers(encoder: ViTEncoder, x_u8: Tensor, img_size: int, mean: tuple[float, ...],
                   std: tuple[float, ...], wanted: Sequence[Feature], batch_size: int = 500,
                   aug: Optional[AugConfig] = None, generator: Optional[torch.Generator] = None,
                   progress: Optional[str] = None) -> dict[Feature, Tensor]:
    """Pooled features of several layers from one forward pass per batch, encoder in eval mode.

    x_u8 [N, H, W, 3] uint8 -> {(layer, pool): [N, D] float32} for each (layer, pool) in ``wanted``: layer
    ``final`` is the encoder's final-normed output (``forward_features``), ``blockK`` the raw output of block K
    (1-based) before that norm (``forward_intermediates``); pool ``mean`` (patch tokens) or ``cls``. ``x_u8`` may
    live on another device than the encoder (a memory-mapped set on the CPU): each batch is moved to it.
    ``progress``: the name the extraction's progress is shown under once it takes a while
    (:func:`maelab.progress.phase`; CIFAR-10's 50,000 images take minutes on a CPU); None shows nothing.
    """
    depth, device = len(encoder.blocks), next(encoder.parameters()).device
    layers = list(dict.fromkeys(layer for layer, _ in wanted))
    blocks = sorted({depth if layer == FINAL else int(layer.removeprefix("block")) for layer in layers})
    was_training = encoder.training
    encoder.eval()
    out: dict[Feature, list[Tensor]] = {f: [] for f in wanted}
    with phase(len(x_u8), progress or "features", "image", enabled=progress is not None) as bar:
        for start in range(0, len(x_u8), batch_size):
            imgs = prepare(x_u8[start:start + batch_size].to(device), img_size, mean, std, aug, generator)
            raw = dict(zip(blocks, encoder.forward_intermediates(imgs, [b - 1 for b in blocks]), strict=True))
            tokens = {layer: encoder.norm(raw[depth]) if layer == FINAL else raw[int(layer.removeprefix("block"))]
                      for layer in layers}
            for layer, pool in wanted:
                out[(layer, pool)].append(pool_tokens(tokens[layer], pool).float())
            bar.update(len(imgs))
    encoder.train(was_training)
    return {f: torch.cat(parts) for f, parts in out.items()}

