"""Fixed sample images and their masked and reconstructed versions, in pixels ready to draw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from maelab.data import Dataset, balanced_subset, eval_transform
from maelab.data.normalize import Normalizer
from maelab.masking import draw_mask
from maelab.models import MAE
from maelab.models.patches import patchify, unpatchify
from maelab.viz.image_names import eval_image_ids, short_name, wrap_name

MASK_FILL = 0.5  # masked patches are drawn mid-grey


def sample_indices(labels: Tensor, n: int, seed: int) -> Tensor:
    """Indices of ``n`` class-balanced test images (one per class when ``n`` is the number of classes).

    ``labels: [M] int64`` -> ``[n] int64``, sorted by class. Seeded, and never simply the first ``n``
    images (the CIFAR-10 test batch is grouped by class).
    """
    n = min(n, len(labels))
    index, y = balanced_subset(torch.arange(len(labels)), labels.cpu(), n, seed, key="--images", split="test set")
    return index[torch.argsort(y * len(labels) + index)]


@dataclass
class Samples:
    """The fixed images of a figure: pixels [N, 3, H, W] in [0, 1], their class names (without labels: what
    ``columns`` calls them), the split they come from and the column titles that name each image."""

    original: Tensor  # [N, 3, H, W] in [0, 1]
    names: list[str]
    split: str = "test"
    columns: list[str] = field(default_factory=list)  # e.g. "IMG_0412.jpg\ncat", "test image #30\ncat"


def pick_samples(data: Dataset, img_size: int, n_images: int, seed: int) -> Samples:
    """Class-balanced test images (seeded), resized for the model, with their class names; for a set without a
    test split (an unlabeled image folder), seeded training images. Each column is titled by the image's file name
    where the images come from files (:func:`maelab.viz.image_names.eval_image_ids`), else by its place in its
    split ("test image #30"), above its class."""
    x, y, split = data.eval_images()
    files = eval_image_ids(data)
    if y is None:
        index = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n_images].sort().values
    else:
        index = sample_indices(y, n_images, seed)
    classes = [] if y is None else [data.classes[int(c)] for c in y.cpu()[index]]
    ids = [wrap_name(files[i]) if files is not None else f"{split} image #{i}" for i in index.tolist()]
    names = [short_name(c) for c in classes] if classes else ids
    columns = [f"{i}\n{c}" for i, c in zip(ids, names, strict=True)] if classes else ids
    return Samples(pixels(x[index.to(x.device)].cpu(), img_size), names, split, columns)


def masked_view(imgs: Tensor, mask: Tensor, patch: int, fill: float = MASK_FILL) -> Tensor:
    """``imgs: [N, 3, H, W]`` in pixels, ``mask: [N, L]`` (1 = masked) -> ``[N, 3, H, W]`` with masked patches grey."""
    patches = patchify(imgs, patch)
    m = mask.unsqueeze(-1).to(patches.dtype)
    return unpatchify(patches * (1 - m) + fill * m, patch)


def to_numpy(imgs: Tensor) -> np.ndarray:
    """``imgs: [N, 3, H, W]`` -> ``[N, H, W, 3]`` float32 numpy, clamped to [0, 1]."""
    return imgs.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class Reconstruction:
    """One forward pass of the MAE on fixed images, all in pixels [N, 3, H, W] in [0, 1]."""

    original: Tensor
    masked: Tensor
    recon: Tensor  # the prediction for masked patches, the visible patches pasted back
    mask: Tensor  # [N, L], 1 = masked


def pixels(x_u8: Tensor, img_size: int) -> Tensor:
    """``x_u8: [N, H, W, 3] uint8`` -> model-sized pixels ``[N, 3, img_size, img_size]`` in [0, 1]."""
    return eval_transform(x_u8, img_size)


@torch.no_grad()
def reconstruct(model: MAE, original: Tensor, norm: Normalizer, ratio: float, seed: int,
                device: Optional[torch.device] = None) -> Reconstruction:
    """Mask ``original: [N, 3, H, W]`` (pixels) at ``ratio`` with a mask drawn from ``seed`` and reconstruct it.

    The same seed, ratio and number of patches give the same mask for any model (and, for two ratios, the
    patches masked at the lower one are also masked at the higher one: both come from one noise draw).
    """
    device = device or next(model.parameters()).device
    imgs = norm(original.to(device))
    generator = torch.Generator(device=device).manual_seed(seed)
    mask = draw_mask(len(imgs), model.spec.num_patches, ratio, device, generator)
    _, pred = model(imgs, mask)
    recon = norm.inverse(model.reconstruct(imgs, pred, mask))
    patch, binary = model.spec.patch_size, mask.binary.cpu()
    return Reconstruction(original=original.cpu(), masked=masked_view(original.cpu(), binary, patch),
                          recon=recon.cpu(), mask=binary)
