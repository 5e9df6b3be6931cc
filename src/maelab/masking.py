"""Per-sample random masking (argsort of noise, as facebookresearch/mae), with one ratio or one per sample.

With one ratio per sample (``mask.per_sample``) the visible counts differ, so the encoder's input is padded
to the largest count and the padding is hidden from attention by a key mask (see docs/masking.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

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
    return round_ratio(num_patches, ratio).effective


def mask_noise(batch: int, num_patches: int, device: torch.device | str = "cpu",
               generator: Optional[torch.Generator] = None, shard: Shard = WHOLE) -> Tensor:
    """The noise whose argsort shuffles the patches: [batch, L] uniform, this shard's rows of a draw for the
    global batch (``shard``; the whole draw in one process)."""
    return shard.rows(torch.rand(shard.global_size(batch), num_patches, device=device, generator=generator))


def num_visible_per_sample(num_patches: int, ratios: Tensor) -> Tensor:
    """ratios [N] -> visible counts [N] int64 on the CPU, each exactly ``num_visible(num_patches, ratio)``.

    Computed on the host (the counts size the encoder's input); a CUDA ``ratios`` costs one sync.
    """
    if ratios.ndim != 1:
        raise ValueError(f"per-sample ratios must be a 1-D tensor [N], got shape {tuple(ratios.shape)}")
    return torch.tensor([num_visible(num_patches, float(r)) for r in ratios.tolist()], dtype=torch.int64)


def effective_ratios(num_patches: int, ratios: Tensor) -> Tensor:
    """ratios [N] -> the ratios each sample's encoder input actually has, [N] float64 on the CPU."""
    return _seen(num_patches, num_visible_per_sample(num_patches, ratios))


def _seen(num_patches: int, visible: Tensor) -> Tensor:
    """Visible counts [N] -> the ratios [N] float64 the encoder sees, 1 - K_i / L."""
    return 1.0 - visible.double() / num_patches


@dataclass(frozen=True)
class MaskRatio:
    """A mask ratio rounded to whole patches (:func:`round_ratio`, once per step): the visible counts a mask is
    drawn with, and the ratio the encoder sees (:attr:`effective`, what metrics.jsonl logs).

    visible: K, the patches every sample keeps (int), or [N] int64 on the host, each sample's count
        (``mask.per_sample``; under torchrun the global batch's, of which a rank takes :meth:`rows`)
    num_patches: L
    """

    visible: int | Tensor
    num_patches: int

    @property
    def effective(self) -> float:
        """The ratio the encoder sees, 1 - K / L; with per-sample counts the batch's mean (no device sync)."""
        if isinstance(self.visible, int):
            return 1.0 - self.visible / self.num_patches
        return float(_seen(self.num_patches, self.visible).mean())

    def rows(self, shard: Shard) -> MaskRatio:
        """This shard's rows of per-sample counts (the global batch's); a single count is every shard's."""
        return self if isinstance(self.visible, int) else MaskRatio(shard.rows(self.visible), self.num_patches)


def round_ratio(num_patches: int, ratio: float | Tensor | MaskRatio) -> MaskRatio:
    """The one place a mask ratio is rounded to whole patches and clamped (:func:`num_visible`): one ratio (a float
    or a 0-d tensor), or a [N] tensor of per-sample ratios. A :class:`MaskRatio` is returned as it is."""
    if isinstance(ratio, MaskRatio):
        if ratio.num_patches != num_patches:
            raise ValueError(f"a mask ratio rounded for {ratio.num_patches} patches used with {num_patches}")
        return ratio
    if isinstance(ratio, Tensor) and ratio.ndim > 0:
        return MaskRatio(num_visible_per_sample(num_patches, ratio), num_patches)
    return MaskRatio(num_visible(num_patches, float(ratio)), num_patches)


class Mask(NamedTuple):
    """One drawn mask for a batch of N images of L patches (facebookresearch/mae's ``random_masking`` outputs, plus
    what per-sample ratios and the masked-only decoder need). A NamedTuple: DDP and torch.compile pass it through.

    ids_keep: [N, K] int64, the visible patches of each sample (with per-sample ratios, sample i's K_i visible
        ones first, then padding taken from its masked ones)
    ids_restore: [N, L] int64, the inverse of the shuffle (patch j is shuffled position ``ids_restore[:, j]``)
    ids_masked: [N, M] int64, the patches whose predictions the loss reads: every masked patch of each sample
        (with per-sample ratios, M = L - min K_i, and a sample with more visible patches has some of them here,
        weighted 0 by :attr:`weights`)
    binary: [N, L] float32, 1 for masked patches, 0 for visible, in patch order (MAE's ``mask``)
    keep_valid: [N, K] bool, True where ``ids_keep`` is a visible patch (False = padding); None when every
        sample keeps the same number (no padding)
    """

    ids_keep: Tensor
    ids_restore: Tensor
    ids_masked: Tensor
    binary: Tensor
    keep_valid: Optional[Tensor]

    @property
    def num_visible(self) -> int:
        """K: the encoder's visible tokens per sample (the largest count with per-sample ratios)."""
        return self.ids_keep.shape[1]

    @property
    def weights(self) -> Optional[Tensor]:
        """[N, M] float: 1 where ``ids_masked`` is masked for that sample; None when all are (one ratio)."""
        return None if self.keep_valid is None else torch.gather(self.binary, 1, self.ids_masked)


def mask_from_noise(noise: Tensor, keep: int | torch.SymInt | Tensor) -> Mask:
    """The mask that ``noise`` [N, L] draws: each sample keeps the patches of its ``keep`` smallest noise values.

    ``keep`` is one int (the same count for every sample; a symbolic size under torch.compile, what the compiled
    step passes) or an [N] int64 tensor of per-sample counts on the host (the encoder's input is padded to the
    largest). No rounding or clamping here: :func:`round_ratio` turns ratios into counts.
    """
    n, num_patches = noise.shape
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    if isinstance(keep, (int, torch.SymInt)):
        binary = torch.ones(n, num_patches, device=noise.device)
        binary[:, :keep] = 0
        binary = torch.gather(binary, 1, ids_restore)
        return Mask(ids_shuffle[:, :keep], ids_restore, ids_shuffle[:, keep:], binary, None)
    k_min, k_max = int(keep.min()), int(keep.max())
    counts = keep.to(noise.device).unsqueeze(1)
    rank = torch.arange(num_patches, device=noise.device).unsqueeze(0)
    binary = torch.gather((rank >= counts).float(), 1, ids_restore)
    keep_valid = None if k_min == k_max else rank[:, :k_max] < counts
    return Mask(ids_shuffle[:, :k_max], ids_restore, ids_shuffle[:, k_min:], binary, keep_valid)


def draw_mask(batch: int, num_patches: int, ratio: float | Tensor | MaskRatio, device: torch.device | str = "cpu",
              generator: Optional[torch.Generator] = None, shard: Shard = WHOLE) -> Mask:
    """Draw a random mask per sample at ``ratio`` (rounded by :func:`round_ratio` unless it already is): where a
    rank takes its rows of the global batch's masks.

    ``ratio`` is one float for the batch, or a [batch] tensor of per-sample ratios (this shard's rows under
    torchrun), or either rounded (a :class:`MaskRatio`). The noise is drawn for the global batch (``shard``), so W
    ranks mask exactly as one process does with the whole batch, and equal per-sample ratios give the same mask as
    the one ratio. Raises ValueError for a ratio outside [0, 1] or per-sample ratios that are not [batch].
    """
    keep = round_ratio(num_patches, ratio).visible
    if isinstance(keep, Tensor) and keep.shape != (batch,):
        raise ValueError(f"{tuple(keep.shape)} per-sample mask ratios for a batch of {batch} images")
    return mask_from_noise(mask_noise(batch, num_patches, device, generator, shard), keep)
