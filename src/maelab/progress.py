"""Progress of a long phase a user waits for: a tqdm bar on a terminal, a plain line now and then otherwise.

A bar redraws itself with carriage returns: right on a terminal, noise in a file. Under nohup or SLURM every redraw
lands in the log (about 1 KB/s, all on one "line"). HF transformers turns tqdm off when stderr is not a terminal;
a user who tails a long run's log still wants to see it move, so here the bar becomes a plain line at a modest
cadence (:data:`PLAIN_EVERY_S`), with the count, the caller's figures (loss, img/s) and the time left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Optional, TextIO

from tqdm import tqdm

# At most one plain line every 30 s (and one at the end): a reader of `tail -f` sees the phase move within half a
# minute, while a day-long run writes about 2,900 lines (~300 KB) instead of a redraw per step. A cadence by time,
# not by percent: a percent is minutes on a long run and a burst of lines on a short one.
PLAIN_EVERY_S = 30.0
# A phase that is often short (decoding an image folder, extracting features, a probe's epochs) shows itself only
# once it has run this long: the seconds of a small set print nothing, while whoever waits minutes for CIFAR-10's
# 60,000 images sees them move. By time, not by image count: the same count is a second on a GPU, minutes on a CPU.
SHORT_PHASE_S = 5.0


def on_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an open terminal (a bar's redraws are shown, not stored)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def duration(seconds: float) -> str:
    """"42 s", "3.5 min" or "2.1 h"."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


class Progress:
    """``total`` units of work named ``desc``: a tqdm bar when ``stream`` (default stderr) is a terminal, else a
    plain line (``desc: 120/4000 steps (3%), loss=0.43 img_s=1234; 1.0 min elapsed, about 32 min left``) at most
    every ``every`` seconds and once more at :meth:`close` (where the phase ended). ``update`` and ``set_postfix``
    as tqdm's, so that a loop written for a bar takes it unchanged; use it as a context manager, or close it.
    ``enabled=False`` shows nothing (``train.progress=false``); ``delay``: nothing until the phase has run that many
    seconds (tqdm's ``delay``; a phase that ends sooner shows nothing at all). A bar opened inside another's phase
    is drawn below it and cleared when done (tqdm's ``leave=None``)."""

    def __init__(self, total: int, desc: str, unit: str = "step", initial: int = 0, every: float = PLAIN_EVERY_S,
                 stream: Optional[TextIO] = None, clock: Callable[[], float] = time.monotonic, enabled: bool = True,
                 delay: float = 0.0):
        self.total, self.desc, self.unit, self.initial, self.n = total, desc, unit, initial, initial
        self.stream = stream if stream is not None else sys.stderr
        self.every, self.clock, self.delay = every, clock, delay
        self.fields: dict[str, Any] = {}
        self.enabled = enabled
        self.bar: Optional[tqdm] = None
        if enabled and on_terminal(self.stream):
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, file=self.stream,
                            delay=delay, leave=None)
        self.started = self.last_line = clock()
        self.shown = initial  # the count the last plain line showed

    def update(self, n: int = 1) -> None:
        """``n`` more units done; a plain line when ``every`` seconds have passed since the last one."""
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and self.clock() - self.last_line >= self.every and self.due():
            self.line()

    def due(self) -> bool:
        """Whether the phase has run ``delay`` seconds: long enough to be shown."""
        return self.clock() - self.started >= self.delay

    def set_postfix(self, **fields: Any) -> None:
        """The figures shown after the count (the latest ones: loss, lr, img/s, ...)."""
        self.fields = fields
        if self.bar is not None:
            self.bar.set_postfix(fields)

    def line(self) -> None:
        """Write the plain line now: the count, the figures, the time spent and the time left at this pace."""
        now = self.clock()
        spent, done = now - self.started, self.n - self.initial
        count = f"{self.n}/{self.total} {self.unit}s"
        if self.total:
            count += f" ({100 * self.n / self.total:.0f}%)"
        figures = " ".join(f"{k}={v}" for k, v in self.fields.items())
        pace = f"{duration(spent)} elapsed"
        if 0 < done and self.n < self.total:
            pace += f", about {duration(spent / done * (self.total - self.n))} left"
        print(f"{self.desc}: {count}{', ' + figures if figures else ''}; {pace}", file=self.stream, flush=True)
        self.last_line, self.shown = now, self.n

    def close(self) -> None:
        """Close the bar, or write the last plain line when the count moved since the one before."""
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.n != self.shown and self.due():
            self.line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def phase(total: int, desc: str, unit: str, enabled: bool = True) -> Progress:
    """The progress of a phase that is often short: shown once it has run :data:`SHORT_PHASE_S` seconds."""
    return Progress(total, desc, unit=unit, enabled=enabled, delay=SHORT_PHASE_S)
