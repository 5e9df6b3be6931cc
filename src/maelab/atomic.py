"""Atomic files: written to a temporary file beside the target, then renamed over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """An open temporary file beside ``path`` (``mode`` "w" or "wb") that replaces ``path`` when the block ends
    without an exception, so that a reader sees the old file or the new one, never half of it; on an exception the
    temporary file is removed and ``path`` is left as it was. An OSError that names no file (a write to a full
    disk) is given ``path`` as its ``filename``, so that whoever reports it can say which file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
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
