"""Atomic files: written to a temporary file beside the target, then renamed over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _process_umask() -> int:
    mask = os.umask(0o022)  # read once, at import (before any thread): os.umask can only be read by setting it
    os.umask(mask)
    return mask


UMASK = _process_umask()
FILE_MODE = 0o666 & ~UMASK  # what a plain open gives a new file under this process's umask


def temp_beside(path: Path, prefix: str, suffix: str = ".tmp") -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``path``'s folder, with the permissions a plain ``open`` would give (0666 less the
    umask): mkstemp makes its file 0600, which the rename would hand on to a checkpoint, result or figure that other
    users of a shared cluster folder could then not read."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:  # a file system without permissions (some network mounts): mkstemp's are kept
        pass
    return fd, tmp


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """An open temporary file beside ``path`` (``mode`` "w" or "wb") that replaces ``path`` when the block ends
    without an exception, so that a reader sees the old file or the new one, never half of it; on an exception the
    temporary file is removed and ``path`` is left as it was. An OSError that names no file (a write to a full
    disk) is given ``path`` as its ``filename``, so that whoever reports it can say which file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path, path.name)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            yield f
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never half of it."""
    with atomic_file(path) as f:
        f.write(text)
    return Path(path)
