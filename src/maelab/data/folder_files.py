"""Which files of an image folder are its images: by extension, skipping hidden paths, following links.

- **Extensions** (PNG, JPEG, BMP, WebP, TIFF) are matched case-insensitively (``.JPG`` is a JPEG); other files
  are skipped.
- **Hidden paths** are skipped: any file or folder below the folder given whose name starts with ``.``, so the
  copies tools leave beside the data (``.ipynb_checkpoints/``, ``.Trash-0/``, macOS's ``.DS_Store`` and ``._*``
  AppleDouble files) are never read as images, and a hidden folder is never a class. The folder given itself may
  lie under a hidden one (``~/.cache/...``): only the names below it count.
- **Links** to folders are followed (``ln -s /data/2019 photos/2019`` adds those images), and each real folder is
  read once, so a link back up the tree (a loop) or a second link to the same folder adds nothing.
- A link to a missing file and a folder that cannot be read are errors (``DataError``), not silently skipped:
  their images would be missing from the set without a word.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from maelab.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")  # matched case-insensitively


def is_image_name(name: str) -> bool:
    """True for a visible file name with an image extension (any case)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS


def image_files(d: Path) -> list[Path]:
    """The image files under ``d`` (any depth, hidden paths skipped, links followed), sorted.

    Raises ``DataError`` for a link to a missing image file or a folder that cannot be read."""
    return sorted(iter_images(Path(d)))


def holds_images(d: Path, max_depth: int = 3) -> bool:
    """True when ``d`` is a folder with an image file at most ``max_depth`` folders below it (3 reaches a labelled
    folder's ``train/<class>/*``); stops at the first one found."""
    return Path(d).is_dir() and next(iter_images(Path(d), max_depth), None) is not None


def sub_dirs(d: Path) -> list[str]:
    """Names of the visible sub-folders of ``d`` (links to folders included), sorted."""
    return sorted(e.name for e in _entries(d) if not e.name.startswith(".") and e.is_dir())


def iter_images(d: Path, max_depth: Optional[int] = None) -> Iterator[Path]:
    """The image files under ``d`` (down to ``max_depth`` folders below it; None: any depth), depth first in
    sorted name order, each real folder once. ``DataError`` as :func:`image_files`."""
    seen: set[tuple[int, int]] = set()
    stack = [(d, 0)]
    while stack:
        folder, depth = stack.pop()
        key = _identity(folder)
        if key in seen:  # reached again through a link: a loop, or a second way in
            continue
        seen.add(key)
        below = []
        for entry in sorted(_entries(folder), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                below.append(Path(entry.path))
            elif is_image_name(entry.name) and entry.is_file():
                yield Path(entry.path)
            elif is_image_name(entry.name) and entry.is_symlink():
                raise DataError(f"{entry.path} is a link to a missing file: fix the link or delete it")
        if max_depth is None or depth < max_depth:
            stack += [(p, depth + 1) for p in reversed(below)]


def _identity(folder: Path) -> tuple[int, int]:
    """``(device, inode)`` of ``folder`` (links followed): the same for every path to one real folder."""
    try:
        st = folder.stat()
    except OSError as err:
        raise _unreadable(folder, err) from None
    return st.st_dev, st.st_ino


def _entries(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder``; ``DataError`` when it cannot be read."""
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError as err:
        raise _unreadable(folder, err) from None


def _unreadable(folder: Path, err: OSError) -> DataError:
    return DataError(f"the folder {folder} cannot be read ({err.strerror or type(err).__name__}): make it readable "
                     "or move it out of data.root")
