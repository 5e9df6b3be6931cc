"""The one exception type the CLI turns into a clear message and exit code 2."""

from __future__ import annotations

import errno
from pathlib import Path


class UserError(Exception):
    """A problem with what the user asked for or gave us (config, data, paths).

    The message names the problem and the fix in one line; the CLI prints it
    without a traceback and exits with code 2.
    """


class ConfigError(UserError):
    """An invalid configuration value or key."""


class DataError(UserError):
    """Missing, corrupt or unsafe dataset files."""


class OutputError(UserError):
    """A run's output could not be written (folder full, read-only, or not permitted)."""


def output_error(err: OSError, path: Path, what: str, then: str) -> OutputError:
    """One line for an OSError while writing ``what`` to ``path``: the reason, the fix, and ``then`` (what to do
    after the fix)."""
    reason = err.strerror or type(err).__name__
    fix = f"free space on the disk holding {path.parent}" if err.errno in (errno.ENOSPC, errno.EDQUOT) \
        else f"make {path.parent} writable"
    return OutputError(f"cannot write the {what} {path} ({reason}): {fix}, then {then}")


def resume_hint(run_dir: Path) -> str:
    """The ``then`` of :func:`output_error` for a run that has started."""
    return f"continue with: maelab pretrain --resume {run_dir} (the previous checkpoint is kept)"


def require_folder(path: Path, option: str) -> Path:
    """``path`` as an output folder: a UserError when it exists and is not a folder (a file, say)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} exists and is not a folder: give a folder (a new one is created)")
    return path
