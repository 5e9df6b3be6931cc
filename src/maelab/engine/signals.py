"""Graceful stop: SIGTERM or SIGINT ends the run at the next step boundary with a checkpoint; so does a deadline
set for the process (``maelab ablate --time-budget``: a lent GPU window ends at a known time)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DEADLINE = signal.SIGALRM  # the code a stop at the process's deadline carries (ranks agree on codes: distributed.py)
_deadline: dict[str, Optional[float]] = {"at": None}


def set_deadline(at: Optional[float]) -> Optional[float]:
    """Stop every run of this process at its next step boundary after ``at`` (seconds since the epoch, as
    ``time.time()``; None: no deadline). The stop is the signals' one: a checkpoint, then RunInterrupted.
    Returns the deadline it replaces."""
    previous, _deadline["at"] = _deadline["at"], at
    return previous


def deadline() -> Optional[float]:
    """The process's deadline (``time.time()`` seconds), or None."""
    return _deadline["at"]


class StopRequest:
    """Remembers the first stop signal received, or that the process's deadline passed; the training loop polls
    ``requested`` between steps."""

    def __init__(self) -> None:
        self._signum: Optional[int] = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self._signum is None:
            self._signum = signum

    @property
    def signum(self) -> Optional[int]:
        """The stop signal's number, DEADLINE once the deadline passed, or None (go on)."""
        at = _deadline["at"]
        if self._signum is None and at is not None and time.time() >= at:
            self._signum = DEADLINE
        return self._signum

    @signum.setter
    def signum(self, value: Optional[int]) -> None:
        self._signum = value

    @property
    def requested(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[StopRequest]:
    """Route SIGTERM/SIGINT to a StopRequest for the block (only possible in the main thread)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class RunInterrupted(Exception):
    """The run stopped on a signal after saving a checkpoint; not an error (the CLI exits 0)."""

    def __init__(self, run_dir: Path, step: int, signum: int) -> None:
        self.run_dir, self.step, self.signum = run_dir, step, signum
        cause = "its deadline (the time budget)" if signum == DEADLINE else signal.Signals(signum).name
        super().__init__(f"stopped by {cause} at step {step}; the checkpoint is saved. "
                         f"Continue with: maelab pretrain --resume {run_dir}")

    @property
    def at_deadline(self) -> bool:
        """Whether the process's deadline stopped the run (not a signal)."""
        return self.signum == DEADLINE
