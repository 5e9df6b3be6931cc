"""Run claims: several `maelab ablate` workers share one suite folder, each run taken by one worker at a time.

A worker claims a run by creating RUN_DIR/.claim (O_EXCL) holding its pid; a claim whose process is gone (a
killed worker) is taken over.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

CLAIM_NAME = ".claim"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def try_claim(run_dir: Path) -> bool:
    """Claim ``run_dir`` for this process; False when a live process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM_NAME
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            holder = _holder(path)
            if holder is not None and (holder == os.getpid() or _alive(holder)):
                return holder == os.getpid()
            path.unlink(missing_ok=True)  # a dead worker's claim
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


@contextlib.contextmanager
def claimed(run_dir: Path) -> Iterator[bool]:
    """``with claimed(run_dir) as mine:`` — the claim is released on exit when it was taken."""
    mine = try_claim(run_dir)
    try:
        yield mine
    finally:
        if mine:
            (run_dir / CLAIM_NAME).unlink(missing_ok=True)
