"""Graceful stop: SIGTERM or SIGINT ends the run at the next step boundary with a checkpoint."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Remembers the first stop signal received; the training loop polls ``requested`` between steps."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum

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
        self.run_dir, self.step = run_dir, step
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} at step {step}; the checkpoint is saved. "
                         f"Continue with: maelab pretrain --resume {run_dir}")
