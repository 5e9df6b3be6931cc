"""What a figure calls each image it shows: its file name where the images come from files (an image folder), else
its place in its split ("test image #12")."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from maelab.config import DataConfig
from maelab.data import Dataset, balanced_subset
from maelab.data.datasets import TEST_SUBSET_SEED
from maelab.data.folder_files import image_files
from maelab.errors import UserError

NAME_CHARS = 14  # characters of a column title's line (a column is 1.2 in wide)


def eval_image_ids(data: Dataset, cfg: DataConfig, seed: int) -> Optional[list[str]]:
    """The file name of each image of ``data.eval_images()`` for an image folder, found by listing the folder and
    taking the subset ``data.limit_*`` took when it was loaded, as :func:`maelab.data.load_dataset` does. None for
    other data, or when the listing no longer matches the loaded images."""
    x, y, split = data.eval_images()
    files = _folder_files(data, cfg, split, y, seed) if cfg.name == "folder" else None
    return None if files is None or len(files) != len(x) else [f.name for f in files]


def short_name(name: str, width: int = NAME_CHARS) -> str:
    """``name`` shortened to ``width`` characters, cut near its start: the end of a file name (its number and
    extension) tells files apart more often than its start ("IMG_…0412.jpg")."""
    if len(name) <= width:
        return name
    head = max(1, (width - 1) // 3)
    return name[:head] + "…" + name[-(width - 1 - head):]


def wrap_name(name: str, width: int = NAME_CHARS) -> str:
    """A file name as at most two lines of ``width`` characters: broken after the last ``_``, ``-``, ``.`` or space
    that leaves both lines short enough, else at ``width``; a second line too long is shortened by
    :func:`short_name` ("holiday_photo_" / "000_…_name.png")."""
    if len(name) <= width:
        return name
    seps = [i + 1 for i, c in enumerate(name) if c in "_-. " and len(name) - width <= i + 1 <= width]
    cut = seps[-1] if seps else width
    return name[:cut] + "\n" + short_name(name[cut:], width)


def _folder_files(data: Dataset, cfg: DataConfig, split: str, y: Optional[Tensor], seed: int) -> Optional[list[Path]]:
    """The files behind ``data``'s ``split`` images in their order (labelled: test/<class>/ per class in class
    order; unlabeled: the whole tree), limited as loading limited them; None when they cannot be listed again or
    do not match (other labels)."""
    root = Path(data.source or cfg.root or "")
    try:
        if split == "test":
            listed = [(f, k) for k, c in enumerate(data.classes) if (root / "test" / c).is_dir()
                      for f in image_files(root / "test" / c)]
        else:
            listed = [(f, -1) for f in image_files(root)]
    except (OSError, UserError):
        return None
    index = torch.arange(len(listed))
    labels = torch.tensor([k for _, k in listed], dtype=torch.int64) if split == "test" else None
    limit = cfg.limit_test if split == "test" else cfg.limit_train
    if limit is not None and 0 < limit <= len(listed):
        index, labels = balanced_subset(index, labels, limit, TEST_SUBSET_SEED if split == "test" else seed)
    if labels is not None and (y is None or not torch.equal(labels, y.cpu())):
        return None
    return [listed[i][0] for i in index.tolist()]


__all__ = ["eval_image_ids", "short_name", "wrap_name"]
