"""Per-sample random masking (argsort of noise, as facebookresearch/mae)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


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


def random_masking(
    batch: int, num_patches: int, ratio: float, device: torch.device | str = "cpu",
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw an independent random mask per sample.

    Returns:
        ids_keep: [N, K] int64, indices of the visible patches (K = num_visible(L, ratio))
        mask: [N, L] float, 1 for masked patches, 0 for visible, in the original patch order
        ids_restore: [N, L] int64, the inverse of the shuffle (argsort of the shuffle)
    """
    keep = num_visible(num_patches, ratio)
    noise = torch.rand(batch, num_patches, device=device, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, mask, ids_restore
