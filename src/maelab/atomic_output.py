"""A command's output files (results, figures, exports): written atomically (:mod:`maelab.atomic`), and a disk that
is full, read-only or not permitted is one clear line (an :class:`~maelab.errors.OutputError`, exit code 2) that
leaves the earlier file as it was and no partial or empty file behind."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Optional

from maelab.atomic import atomic_file
from maelab.errors import OutputError, output_error

_OS_ERROR = re.compile(r"os error (\d+)")  # how safetensors' Rust writer reports an I/O error


def as_os_error(err: BaseException) -> Optional[OSError]:
    """``err`` as the OSError it reports: itself, or the errno that safetensors' writer names in its message
    ("... No space left on device (os error 28)"); None for any other error."""
    if isinstance(err, OSError):
        return err
    found = _OS_ERROR.search(str(err))
    if found and type(err).__name__ == "SafetensorError":
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    return None


def output_failure(err: BaseException, path: Path, what: str, then: str) -> Optional[OutputError]:
    """The one-line error for ``err`` while writing ``what`` to ``path`` (:func:`maelab.errors.output_error`), or
    None when ``err`` is no I/O error."""
    os_err = as_os_error(err)
    return None if os_err is None else output_error(os_err, Path(path), what, then)


@contextmanager
def output_file(path: str | Path, what: str, then: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """:func:`maelab.atomic.atomic_file` for ``path``: a reader sees the old file or the whole new one; an I/O error
    (full disk, read-only, not permitted) raises one OutputError naming ``what``, the file, the fix and ``then``."""
    try:
        with atomic_file(path, mode) as f:
            yield f
    except OSError as err:
        raise output_error(err, Path(path), what, then) from None


def write_output(path: str | Path, data: bytes | str, what: str, then: str) -> Path:
    """Write ``data`` to ``path`` with :func:`output_file`; returns the path."""
    with output_file(path, what, then, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)
    return Path(path)


def save_figure(fig: Any, path: str | Path, then: str, dpi: Optional[float] = None) -> Path:
    """A matplotlib figure as a PNG at ``path``, written with :func:`output_file` (``savefig`` onto the path left
    an empty PNG on a full disk); returns the path."""
    with output_file(path, "figure", then) as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi if dpi is not None else fig.dpi)
    return Path(path)


WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)  # errors only a write meets (EACCES: reads meet it too)


def unreported_write_error(err: BaseException, then: str) -> Optional[OutputError]:
    """The one-line error for a full or read-only disk (``WRITE_ERRORS``) that a writer let through as a bare
    OSError (an ablation's results, report and records; :func:`maelab.atomic.atomic_file` names the file in
    ``filename``), or None for any other error: what the CLI says instead of an internal error."""
    if not isinstance(err, OSError) or err.errno not in WRITE_ERRORS:
        return None
    return output_error(err, Path(err.filename or "."), "file", then)


def make_folder(path: str | Path, what: str, then: str) -> Path:
    """``path`` created (with its parents) when missing; an I/O error is one OutputError."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise output_error(err, Path(path), what, then) from None
    return Path(path)

