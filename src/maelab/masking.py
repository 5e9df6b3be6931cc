"""Per-sample random masking (argsort of noise, as facebookresearch/mae), with one ratio or one per sample.

With one ratio per sample (``mask.per_sample``) the visible counts differ, so the encoder's input is padded
to the largest count and the padding is hidden from attention by a key mask (see docs/masking.md).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from maelab.shard import WHOLE, Shard


def num_visible(num_patches: int, ratio: float) -> int:
    """Patches kept for the encoder: round(L * (1 - ratio)), clamped to [1, L - 1].

    The clamp keeps at least one visible patch (the encoder needs input) and one
    masked patch (the loss needs a target), so ratios 0 and 1 are safe.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio {ratio} is outside [0, 1]")
    keep = int(num_patches * (1.0 - ratio) + 0.5)
    return min(max(keep, 1), num_patches - 1)


def effective_ratio(num_patches: int, ratio: float) -> float:
    """The ratio the encoder actually sees after rounding and clamping."""
    return 1.0 - num_visible(num_patches, ratio) / num_patches


def mask_noise(batch: int, num_patches: int, device: torch.device | str = "cpu",
               generator: Optional[torch.Generator] = None, shard: Shard = WHOLE) -> Tensor:
    """The noise whose argsort shuffles the patches: [batch, L] uniform, this shard's rows of a draw for the
    global batch (``shard``; the whole draw in one process)."""
    return shard.rows(torch.rand(shard.global_size(batch), num_patches, device=device, generator=generator))


def random_masking(
    batch: int, num_patches: int, ratio: float, device: torch.device | str = "cpu",
    generator: Optional[torch.Generator] = None, shard: Shard = WHOLE,
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw an independent random mask per sample (under torchrun, ``shard``'s rows of the global batch's masks).

    Returns:
        ids_keep: [N, K] int64, indices of the visible patches (K = num_visible(L, ratio))
        mask: [N, L] float, 1 for masked patches, 0 for visible, in the original patch order
        ids_restore: [N, L] int64, the inverse of the shuffle (argsort of the shuffle)
    """
    keep = num_visible(num_patches, ratio)
    noise = mask_noise(batch, num_patches, device, generator, shard)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, mask, ids_restore


def num_visible_per_sample(num_patches: int, ratios: Tensor) -> Tensor:
    """ratios [N] -> visible counts [N] int64 on the CPU, each exactly ``num_visible(num_patches, ratio)``.

    Computed on the host (the counts size the encoder's input); a CUDA ``ratios`` costs one sync.
    """
    if ratios.ndim != 1:
        raise ValueError(f"per-sample ratios must be a 1-D tensor [N], got shape {tuple(ratios.shape)}")
    return torch.tensor([num_visible(num_patches, float(r)) for r in ratios.tolist()], dtype=torch.int64)


def effective_ratios(num_patches: int, ratios: Tensor) -> Tensor:
    """ratios [N] -> the ratios each sample's encoder input actually has, [N] float64 on the CPU."""
    return 1.0 - num_visible_per_sample(num_patches, ratios).double() / num_patches


def random_masking_per_sample(
    num_patches: int, ratios: Tensor, device: torch.device | str = "cpu",
    generator: Optional[torch.Generator] = None, shard: Shard = WHOLE,
) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Draw a random mask per sample, sample ``i`` keeping ``num_visible(L, ratios[i])`` patches.

    The noise is drawn exactly as :func:`random_masking` draws it, so equal ratios give the same masks.

    Args:
        ratios: [N] the mask ratio of each sample (this shard's rows under torchrun).
    Returns:
        ids_keep: [N, K_max] int64, sample i's visible patches first, then (padding) some of its masked ones
        mask: [N, L] float, 1 for masked patches, 0 for visible, in the original patch order
        ids_restore: [N, L] int64, the inverse of the shuffle
        keep_valid: [N, K_max] bool, True where ``ids_keep`` is a visible patch (False = padding); None when
            every sample keeps the same number (no padding, the fast path)
    """
    keep_host = num_visible_per_sample(num_patches, ratios)
    k_max, uniform = int(keep_host.max()), int(keep_host.min()) == int(keep_host.max())
    noise = mask_noise(len(keep_host), num_patches, device, generator, shard)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    keep = keep_host.to(device).unsqueeze(1)
    rank = torch.arange(num_patches, device=device).unsqueeze(0)
    mask = torch.gather((rank >= keep).float(), 1, ids_restore)
    keep_valid = None if uniform else rank[:, :k_max] < keep
    return ids_shuffle[:, :k_max], mask, ids_restore, keep_valid
