"""The run directory's lock: one process trains a run at a time.

A process that trains a run (``maelab pretrain``, ``--resume``, or replaces it with ``overwrite=true``) holds an
OS lock (``fcntl.flock``, exclusive) on RUN_DIR/.lock for as long as it trains, and writes ``pid host`` into the
file. The kernel releases the lock when the process ends in any way (SIGKILL included), so a stale file never
blocks anyone: a second process is refused only while the first one is alive. Under torchrun rank 0 holds it.

The file is removed when the lock is released; a process that opened it just before checks, once locked, that
the path still names the file it locked (else it locks the new one), so removing it is safe. Within one process
the lock is re-entrant (a count per run directory): :func:`maelab.engine.run_dir.prepare_run_dir` takes it again
inside a run's own hold.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

from maelab.errors import UserError, output_error

LOCK_NAME = ".lock"
_held: dict[Path, list[Any]] = {}  # this process's locks: resolved run dir -> [fd, count, created the dir]
_guard = threading.Lock()


class RunBusy(UserError):
    """Another process is training the run directory."""


def lock_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOCK_NAME


def holder_of(fd: int) -> str:
    """'process 123 on host h' from a lock file's ``pid host`` line ('another process' when it has none yet)."""
    try:
        pid, host = os.pread(fd, 256, 0).decode(errors="replace").split()[:2]
        return f"process {int(pid)} on host {host}"
    except (OSError, ValueError):
        return "another process"


def busy_error(run_dir: Path, who: str) -> RunBusy:
    return RunBusy(f"{run_dir} is being trained by {who} (it holds {lock_path(run_dir)}): wait for it to end, or stop "
                   f"it (SIGTERM saves a checkpoint), then run this again; or choose another out_dir")


def _open_locked(run_dir: Path) -> int:
    """An fd of RUN_DIR/.lock holding the exclusive lock (non-blocking). Raises RunBusy when another process holds
    it, an OutputError when the file cannot be created."""
    path = lock_path(run_dir)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise output_error(err, path, "run lock", "run this again") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            who = holder_of(fd)
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise busy_error(run_dir, who) from None
            raise output_error(err, path, "run lock", "run this again") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it after we opened it: lock the file now at the path


def acquire(run_dir: str | Path) -> None:
    """Take RUN_DIR's lock for this process (created with the folder when missing), or count one more hold of it.
    Raises RunBusy naming the process that holds it."""
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    with _guard:
        if key in _held:
            _held[key][1] += 1
            return
        created = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"cannot create out_dir {run_dir} ({err.strerror}): choose a writable folder") from None
        try:
            fd = _open_locked(run_dir)
        except BaseException:
            _remove_if_empty(run_dir, created)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds without its note
        _held[key] = [fd, 1, created]


def release(run_dir: str | Path) -> None:
    """Give one hold of RUN_DIR's lock back; the last one removes the lock file (and the folder when
    :func:`acquire` created it and nothing else was written into it) and unlocks."""
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[key]
        fd, _, created = entry
        lock_path(run_dir).unlink(missing_ok=True)  # still locked: a process that opened it re-checks the path
        os.close(fd)
        _remove_if_empty(run_dir, created)


def _remove_if_empty(run_dir: Path, created: bool) -> None:
    if created:
        try:
            run_dir.rmdir()  # only when empty: a run that failed before writing anything leaves no folder
        except OSError:
            pass


@contextmanager
def run_lock(run_dir: str | Path, dist: Optional[Any] = None, step: Optional[int] = None) -> Iterator[None]:
    """Hold RUN_DIR's lock while the block runs. ``dist`` (:class:`maelab.engine.distributed.Dist`): under torchrun
    rank 0 takes it and a refusal is raised on every rank; None: this process takes it. ``step``: a resume's, read
    from last.pt before the lock was taken; refused when last.pt has moved on since (another process trained it in
    between), so that the resume never replaces newer work with older."""
    main = dist is None or dist.is_main
    if dist is None:
        _acquire_at(run_dir, step)
    else:
        dist.main_only(_acquire_at, run_dir, step)
    try:
        yield
    finally:
        if main:
            release(run_dir)


def _acquire_at(run_dir: str | Path, step: Optional[int]) -> None:
    acquire(run_dir)
    try:
        if step is not None:
            _check_step(Path(run_dir), step)
    except BaseException:
        release(run_dir)
        raise


def _check_step(run_dir: Path, step: int) -> None:
    """Raise when RUN_DIR's last.pt is no longer the checkpoint of ``step`` that a resume read."""
    import torch  # here: the lock itself needs no torch

    from maelab.run_layout import RunLayout

    try:
        now = int(torch.load(RunLayout(run_dir).checkpoint, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:  # noqa: BLE001 - gone or unreadable now: not the checkpoint that was read
        now = None
    if now != step:
        raise RunBusy(f"{run_dir}'s checkpoint changed while this resume started (it read step {step}, last.pt now "
                      f"holds {'no readable checkpoint' if now is None else f'step {now}'}): another process trained "
                      "it; run the resume again")
