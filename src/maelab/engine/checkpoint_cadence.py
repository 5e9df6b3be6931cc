"""When the training loop writes a checkpoint: at the end of an epoch, every ``train.save_every`` epochs or once
``train.save_every_seconds`` have passed since the last checkpoint (or the start of the invocation), whichever comes
first; always after the invocation's last epoch and on a stop signal (so that a resume loses nothing).

Kept epoch checkpoints (:mod:`maelab.engine.kept`) follow ``save_every`` alone: a checkpoint due by the clock writes
only last.pt, so the epochs a run keeps do not depend on how fast it ran.

Training never waits for a write it could skip: a checkpoint due by the cadence while the previous write is still
on disk's way (an epoch shorter than a write: a GPU at CUDA-graph speed) is deferred to the next epoch's end. The
last epoch, a stop signal and a kept epoch always write (waiting for the write in flight).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Optional

Clock = Callable[[], float]  # seconds, monotonic (time.monotonic; a fake one in tests)


class CheckpointCadence:
    """The checkpoint decision of one invocation of the loop, and when its last checkpoint was taken."""

    def __init__(self, save_every: int, save_every_seconds: Optional[float], last_epoch: int,
                 clock: Clock = time.monotonic) -> None:
        self.save_every, self.save_every_seconds, self.last_epoch = save_every, save_every_seconds, last_epoch
        self.clock = clock
        self.last_save = clock()  # the invocation's start counts as a checkpoint: no write right after a resume
        self.deferred = False  # a checkpoint was due while the previous write was running

    def due(self, epochs_done: int, stopping: bool, must: bool = False, busy: bool = False) -> bool:
        """Whether to write a checkpoint after ``epochs_done`` epochs (``stopping``: a stop signal was received;
        ``must``: this epoch's checkpoint is kept; ``busy``: the previous write is still running, so a checkpoint
        only the cadence asks for waits for the next epoch's end). A yes restarts the seconds from now: the moment
        the state is copied, which is what a crash would lose."""
        now = self.clock()
        final = must or stopping or epochs_done >= self.last_epoch
        by_time = self.save_every_seconds is not None and now - self.last_save >= self.save_every_seconds
        if not (final or by_time or self.deferred or epochs_done % self.save_every == 0):
            return False
        if busy and not final:
            self.deferred = True
            return False
        self.deferred, self.last_save = False, now
        return True
