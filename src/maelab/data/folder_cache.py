"""Where an image folder's decoded pixels live: in memory, or in a memory-mapped ``.npy`` cache on disk.

A decoded set takes ``N x size x size x 3`` bytes (uint8): 3 KiB an image at 32 px, 147 KiB at 224 px, so a
million 32-px images take 2.9 GiB. Up to ``data.max_memory_gib`` (all splits together) the pixels are decoded
into memory, as every other dataset. Above it they are decoded once into one ``.npy`` file a split under
``data.cache_dir/folders/<hash of the root>/`` and memory-mapped (copy-on-write): pages are read from the disk as
batches touch them and the operating system may drop them again, so the set need not fit in RAM.

Invalidation: a cache file's name carries a hash of the decoding format, the image size and every file's path
(relative to the root), size, modification time and status-change time (:func:`fingerprint`); a folder whose
files changed gets a new name and is decoded again, and the stale file of that split and size is deleted. A file
is written to a temporary name and renamed when complete, so a crash leaves no half-written cache under a valid
name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from maelab.atomic import temp_beside
from maelab.errors import DataError

# change when the decoding rules change: every cache is then rebuilt. 2: EXIF Orientation applied (caches of format
# 1 hold camera photos sideways); hidden paths skipped and links to folders followed (a new file list).
FORMAT = "maelab-folder-cache-2"
GIB = 1 << 30
Fill = Callable[[list[Path], int, str, np.ndarray], None]  # decodes files at a size into an array [N, S, S, 3]


def decoded_bytes(n_images: int, size: int) -> int:
    """Bytes of ``n_images`` decoded images of ``size x size`` pixels (uint8 RGB)."""
    return n_images * size * size * 3


@dataclass(frozen=True)
class FolderStore:
    """How one image folder's splits are held: ``root`` the folder, ``cache_dir`` the cache's base folder,
    ``max_bytes`` the largest decoded size (all splits) kept in memory."""

    root: Path
    cache_dir: Path
    max_bytes: int

    def mapped(self, n_images: int, size: int) -> bool:
        """True when ``n_images`` images at ``size`` px go to the disk cache (more than ``max_bytes``)."""
        return decoded_bytes(n_images, size) > self.max_bytes

    def folder(self) -> Path:
        """This root's cache folder: ``cache_dir/folders/<sha256 of the resolved root, 16 hex digits>``."""
        return self.cache_dir / "folders" / hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]

    def cache_file(self, split: str, files: list[Path], size: int) -> Path:
        """The cache file of ``split`` decoded from ``files`` at ``size`` px (its name holds their fingerprint)."""
        return self.folder() / f"{split}-{size}px-{fingerprint(self.root, files, size)}.npy"

    def load(self, split: str, files: list[Path], size: int, fill: Fill, desc: str) -> Tensor:
        """``[len(files), size, size, 3] uint8``, memory-mapped from the split's cache file; the file is decoded
        (``fill(files, size, desc, out)``) and written first when it is missing or stale. ``DataError`` when the
        cache folder cannot be written."""
        path = self.cache_file(split, files, size)
        if not path.is_file():
            self._write(path, files, size, fill, desc)
            for stale in path.parent.glob(f"{split}-{size}px-*.npy"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        return open_mapped(path, (len(files), size, size, 3))

    def _write(self, path: Path, files: list[Path], size: int, fill: Fill, desc: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = temp_beside(path, path.stem)
            os.close(fd)
        except OSError as err:
            raise DataError(f"cannot write the image cache in {path.parent} ({err.strerror or type(err).__name__}): "
                            "set data.cache_dir to a writable folder, or raise data.max_memory_gib to hold the "
                            "images in memory") from None
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), size, size, 3))
            fill(files, size, f"{desc} into the cache", out)
            out.flush()
            del out
            os.replace(tmp, path)
        except OSError as err:
            raise DataError(f"cannot write the image cache {path} ({err.strerror or type(err).__name__}): free "
                            "space there or set data.cache_dir to another folder") from None
        finally:
            Path(tmp).unlink(missing_ok=True)


def fingerprint(root: Path, files: list[Path], size: int) -> str:
    """20 hex digits of sha256 over the format, ``size`` and each file's path relative to ``root``, byte size,
    modification time and status-change time (ns): any added, removed, renamed, resized, touched or rewritten file
    changes it. The status-change time (ctime) is set by the system on every write and no tool can set it back, so
    a file rewritten with the same size and its old mtime restored (``cp -p``, ``rsync -t``, ``tar x``, fixed mtimes
    of reproducible archives) rebuilds the cache too; it kept the old pixels before."""
    digest = hashlib.sha256(f"{FORMAT}\n{size}\n".encode())
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n"
                      .encode())
    return digest.hexdigest()[:20]


def open_mapped(path: Path, shape: tuple[int, ...]) -> Tensor:
    """The uint8 array in the ``.npy`` file ``path`` as a CPU tensor backed by a copy-on-write memory map (writes
    stay in this process; the file is never changed). ``DataError`` when it is not the expected array."""
    try:
        a = np.load(path, mmap_mode="c")
    except (OSError, ValueError) as err:
        raise DataError(f"the image cache {path} cannot be read ({err}): delete it and run again") from None
    if a.dtype != np.uint8 or a.shape != shape:
        raise DataError(f"the image cache {path} holds {a.dtype} {a.shape}, not uint8 {shape}: delete it and run "
                        "again")
    return torch.from_numpy(a)

