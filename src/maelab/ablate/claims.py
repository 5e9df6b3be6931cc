"""Run claims: several `maelab ablate` workers (or cluster jobs) share one suite folder, each run taken by one
process at a time.

A process claims a run by creating RUN_DIR/.claim (O_EXCL) holding ``pid host [slurm_job restart_count]``.
A claim whose process is gone is taken over; liveness can only be checked on the claim's own host, so a claim
from another host is respected unless an earlier start of this process's own SLURM job wrote it (a job killed,
then requeued, finding its own claim). The cluster launcher clears the claims of SLURM jobs that have ended
(launcher.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

CLAIM_NAME = ".claim"


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: a process on a host, inside a SLURM job or not (""), and which start of that job
    (SLURM_RESTART_COUNT: a requeued job starts again with the same id)."""

    pid: int
    host: str = ""
    job: str = ""
    restart: int = 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def me() -> Holder:
    env = os.environ
    return Holder(os.getpid(), socket.gethostname(), env.get("SLURM_JOB_ID", ""),
                  int(env.get("SLURM_RESTART_COUNT", "0") or 0))


def holder(run_dir: Path) -> Optional[Holder]:
    """The claim's holder; None when there is no claim or it cannot be read (a claim written by an older maelab
    holds the pid alone: this host's)."""
    try:
        pid, *rest = (Path(run_dir) / CLAIM_NAME).read_text().split()
        host, job, restart = (rest + ["", "", "0"][len(rest):])[:3]  # the fields a claim has, then defaults
        return Holder(int(pid), host, job, int(restart)) if int(pid) > 0 else None
    except (OSError, ValueError):
        return None


def is_stale(h: Holder) -> Optional[bool]:
    """True when the holder is gone, False when it runs, None when this host cannot tell (a process on another
    host, unless it was an earlier start of this process's own SLURM job: killed, then requeued)."""
    mine = me()
    if not h.host or h.host == mine.host:
        return not _alive(h.pid)
    if h.job and h.job == mine.job and h.restart < mine.restart:
        return True
    return None


def release(run_dir: Path) -> None:
    """Remove a claim (one whose holder is known to be gone)."""
    (Path(run_dir) / CLAIM_NAME).unlink(missing_ok=True)


def try_claim(run_dir: Path) -> bool:
    """Claim ``run_dir`` for this process; False when a live process (or one on another host) holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM_NAME
    mine = me()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            h = holder(run_dir)
            if h is not None and h.pid == mine.pid and h.host in ("", mine.host):
                return True
            if h is not None and is_stale(h) is not True:
                return False
            release(run_dir)  # a dead process's claim
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{mine.pid} {mine.host} {mine.job} {mine.restart}" if mine.job else f"{mine.pid} {mine.host}")
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
            release(run_dir)
