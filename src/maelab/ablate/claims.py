"""Run claims: several `maelab ablate` workers (or cluster jobs) share one suite folder, each run taken by one
process at a time.

A process claims a run by creating RUN_DIR/.claim (O_EXCL) holding ``pid host [slurm_job restart_count]``, and
while it holds the claim (:func:`claimed`) a daemon thread refreshes the file's mtime every :data:`HEARTBEAT_S`
seconds: its heartbeat. Whether another process may take a claim over:

- a claim from this host (or with no host: an older maelab's) is taken over when its process is gone;
- a claim from another host is taken over when an earlier start of this process's own SLURM job wrote it (a job
  killed, then requeued, finding its own claim), or when its file has not been refreshed for
  :data:`STALE_AFTER_S` seconds (a machine that is gone, a suite folder copied from another machine; a claim of
  an older maelab, which had no heartbeat, goes by its file's age alike), with a warning naming its holder;
- any other claim from another host is respected: its process may still run.

The cluster launcher clears the claims of SLURM jobs that have ended, and those gone quiet (launcher.py).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from maelab.ablate.reuse import warn

CLAIM_NAME = ".claim"
HEARTBEAT_S = 60.0  # how often a held claim's mtime is refreshed
STALE_AFTER_S = 10 * HEARTBEAT_S  # another host's claim not refreshed for this long is taken over


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: a process on a host, inside a SLURM job or not (""), and which start of that job
    (SLURM_RESTART_COUNT: a requeued job starts again with the same id); ``refreshed`` is the claim file's mtime,
    its last heartbeat (0: unknown)."""

    pid: int
    host: str = ""
    job: str = ""
    restart: int = 0
    refreshed: float = field(default=0.0, compare=False)


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


def _is_me(h: Holder, mine: Holder) -> bool:
    return h.pid == mine.pid and h.host in ("", mine.host)


def holder(run_dir: Path) -> Optional[Holder]:
    """The claim's holder; None when there is no claim or it cannot be read (a claim written by an older maelab
    holds the pid alone: this host's)."""
    path = Path(run_dir) / CLAIM_NAME
    try:
        refreshed = path.stat().st_mtime
        pid, *rest = path.read_text().split()
        host, job, restart = (rest + ["", "", "0"][len(rest):])[:3]  # the fields a claim has, then defaults
        return Holder(int(pid), host, job, int(restart), refreshed) if int(pid) > 0 else None
    except (OSError, ValueError):
        return None


def since_heartbeat(h: Holder) -> float:
    """Seconds since the holder last refreshed its claim."""
    return time.time() - h.refreshed


def _quiet(h: Holder) -> bool:
    """Whether another host's claim has gone unrefreshed for longer than STALE_AFTER_S."""
    return h.refreshed > 0 and since_heartbeat(h) > STALE_AFTER_S


def is_stale(h: Holder) -> Optional[bool]:
    """True when the holder is gone, False when it runs, None when this host cannot tell (a process on another
    host, unless it was an earlier start of this process's own SLURM job, killed then requeued, or its claim has
    had no heartbeat for STALE_AFTER_S)."""
    mine = me()
    if not h.host or h.host == mine.host:
        return not _alive(h.pid)
    if h.job and h.job == mine.job and h.restart < mine.restart:
        return True
    return True if _quiet(h) else None


def quiet_note(h: Holder) -> Optional[str]:
    """What to say when another host's claim is stale for want of a heartbeat; None for any other claim."""
    if not h.host or h.host == me().host or not _quiet(h):
        return None
    job = f", SLURM job {h.job}" if h.job else ""
    return (f"the claim of process {h.pid} on {h.host}{job} has had no heartbeat for "
            f"{since_heartbeat(h) / 60:.1f} min (stale after {STALE_AFTER_S / 60:g} min)")


def release(run_dir: Path) -> None:
    """Remove a claim (one whose holder is known to be gone)."""
    (Path(run_dir) / CLAIM_NAME).unlink(missing_ok=True)


def _existing(run_dir: Path, mine: Holder) -> Optional[bool]:
    """For a claim found in place: True when it is this process's, False when its holder may run, None when it
    was removed (its holder is gone)."""
    h = holder(run_dir)
    if h is not None and _is_me(h, mine):
        return True
    if h is not None and is_stale(h) is not True:
        return False
    note = quiet_note(h) if h is not None else None
    if note:
        warn(f"{run_dir}: {note}; taking it over")
    release(run_dir)
    return None


def try_claim(run_dir: Path) -> bool:
    """Claim ``run_dir`` for this process; False when a process that may still run holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM_NAME
    mine = me()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            found = _existing(run_dir, mine)
            if found is not None:
                return found
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{mine.pid} {mine.host} {mine.job} {mine.restart}" if mine.job else f"{mine.pid} {mine.host}")
        return True
    return False


def _beat(run_dir: Path, every: float, stop: threading.Event) -> None:
    """Refresh the claim's mtime every ``every`` seconds until ``stop`` is set or the claim is no longer this
    process's (removed, or taken over after a stall: then say so)."""
    mine = me()
    while not stop.wait(every):
        h = holder(run_dir)
        if h is None or not _is_me(h, mine):
            if h is not None:
                warn(f"{run_dir}: the claim was taken over by process {h.pid} on {h.host or 'this host'} "
                     "(no heartbeat from this process in time); this process goes on with it")
            return
        with contextlib.suppress(OSError):  # removed meanwhile
            os.utime(run_dir / CLAIM_NAME)


@contextlib.contextmanager
def heartbeat(run_dir: Path, every: Optional[float] = None) -> Iterator[None]:
    """Keep this process's claim on ``run_dir`` fresh while inside (a daemon thread, joined on exit)."""
    stop = threading.Event()
    thread = threading.Thread(target=_beat, args=(Path(run_dir), every or HEARTBEAT_S, stop),
                              name=f"maelab-claim-heartbeat {run_dir}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _release_own(run_dir: Path) -> None:
    """Remove the claim if it is still this process's (not one that another process took over meanwhile)."""
    h = holder(run_dir)
    if h is not None and _is_me(h, me()):
        release(run_dir)


@contextlib.contextmanager
def claimed(run_dir: Path, heartbeat_s: Optional[float] = None) -> Iterator[bool]:
    """``with claimed(run_dir) as mine:`` — while the claim is held its heartbeat runs (every ``heartbeat_s``,
    HEARTBEAT_S by default); it is released on exit when it was taken."""
    mine = try_claim(run_dir)
    try:
        with heartbeat(run_dir, heartbeat_s) if mine else contextlib.nullcontext():
            yield mine
    finally:
        if mine:
            _release_own(run_dir)
