"""What a figure calls each image it shows: its file name where the images come from files (an image folder), else
its place in its split ("test image #12")."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Optional

from maelab.data import Dataset

NAME_CHARS = 14  # characters of a column title's line (a column is 1.2 in wide)


def eval_image_ids(data: Dataset) -> Optional[list[str]]:
    """The file name (without its folders) of each image of ``data.eval_images()``, in its order, as the loader
    recorded it (:meth:`maelab.data.Dataset.eval_files`); None where the images come from no files."""
    files = data.eval_files()
    return None if files is None else [PurePosixPath(f).name for f in files]


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


__all__ = ["eval_image_ids", "short_name", "wrap_name"]
