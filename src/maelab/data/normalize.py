"""The dataset's per-channel standardisation, written once: pixels in [0, 1] <-> the model's input space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class Normalizer:
    """``(pixels - mean) / std`` per channel with the training set's statistics (``Dataset.mean``, ``.std``).

    pixels: [N, 3, H, W] floats in [0, 1]; the statistics are held as [1, 3, 1, 1] float32 tensors on ``device``
    (built once, so that a call makes no host-to-device copy when the images are on that device)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu") -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __call__(self, pixels: Tensor) -> Tensor:
        mean, std = self._like(pixels)
        return (pixels - mean) / std

    def inverse(self, x: Tensor) -> Tensor:
        """Model space -> pixels, clamped to [0, 1]."""
        mean, std = self._like(x)
        return (x * std + mean).clamp(0, 1)

    def _like(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype)
