"""``maelab ablate --time-budget SECONDS``: which run to start next so that a window's runs fit its time.

A lent GPU comes for a fixed window. The runner then starts the longest run that still fits the time left
(first-fit decreasing: the long runs are placed while the window is empty), and the process's deadline stops a
run that overruns at a step boundary with a checkpoint (engine/signals.py), so the next window resumes it. A run's
length is estimated from this suite's runs measured on this machine with as many workers sharing it (each run's
ablate.json keeps its seconds, summed over the windows it took): the mean of its variant's, else of all the
suite's. Without any measured run the first run started is the calibration. A run longer than a whole budget (the
eager GAN in a 10-minute call) is started all the same and split by epochs across windows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any, Optional, Protocol

from maelab.ablate.environment import machine
from maelab.ablate.results import read_status


class Planned(Protocol):
    """What the budget reads of a planned run (runner.Plan)."""

    variant: str

    @property
    def run_dir(self) -> Any: ...


@dataclass(frozen=True)
class Budget:
    """A time budget: ``seconds`` in all, ending at ``deadline`` (``time.time()`` seconds)."""

    seconds: float
    deadline: float

    @classmethod
    def starting_now(cls, seconds: float) -> Budget:
        return cls(float(seconds), time.time() + float(seconds))

    def left(self) -> float:
        """Seconds until the deadline (negative once past)."""
        return self.deadline - time.time()


def timed_on(workers: int) -> dict[str, Any]:
    """Where a run's seconds were measured: this machine's GPU (or CPU model), and how many workers shared it."""
    info = machine()
    return {"machine": info.get("gpu", info["cpu"]), "workers": int(workers)}


def spent_seconds(run_dir: Any) -> float:
    """The seconds already spent on a run here and in earlier windows (0 for a run not started)."""
    return float(read_status(run_dir).get("seconds", 0.0))


def measured(plans: Sequence[Planned], where: dict[str, Any]) -> dict[str, list[float]]:
    """{variant: [seconds of each finished run timed ``where``]} over ``plans``."""
    found: dict[str, list[float]] = {}
    for plan in plans:
        status = read_status(plan.run_dir)
        if status.get("status") == "done" and status.get("timed_on") == where and "seconds" in status:
            found.setdefault(plan.variant, []).append(float(status["seconds"]))
    return found


def estimate(plan: Planned, lengths: dict[str, list[float]]) -> Optional[float]:
    """Seconds ``plan`` still needs: the mean measured length of its variant (else of every measured run) less
    what it already spent; None when nothing was measured here."""
    runs = lengths.get(plan.variant) or [s for seconds in lengths.values() for s in seconds]
    if not runs:
        return None
    return max(mean(runs) - spent_seconds(plan.run_dir), 0.0)


def seconds_left(remaining: Sequence[Planned], lengths: dict[str, list[float]], workers: int = 1) -> Optional[float]:
    """Seconds until ``remaining`` (the run starting now and those after it) are done: their estimates
    (:func:`estimate`) shared among ``workers``, and never less than the longest of them; None while no run was
    measured here (before the first one ends there is nothing to say, and 0 s would be false)."""
    estimates = [estimate(p, lengths) for p in remaining]
    known = [e for e in estimates if e is not None]
    if not known or len(known) < len(estimates):
        return None
    return max(sum(known) / max(workers, 1), max(known))


def pick(candidates: Sequence[Planned], budget: Budget, lengths: dict[str, list[float]]) -> Optional[Planned]:
    """The next run to start: among those whose estimate fits the time left, or is unknown (a calibration), or
    exceeds the whole budget (it will be split; only while half the budget is left), the longest; None when none
    may start or the budget is spent."""
    left = budget.left()
    if left <= 0:
        return None
    split_ok = left >= budget.seconds / 2  # a run longer than any window takes an emptyish one, not its tail
    scored = [(estimate(p, lengths), i, p) for i, p in enumerate(candidates)]
    allowed = [(e, i, p) for e, i, p in scored if e is None or e <= left or (e > budget.seconds and split_ok)]
    if not allowed:
        return None
    unknown = [(i, p) for e, i, p in allowed if e is None]
    if unknown:  # measure first: the rest is then placed from figures
        return min(unknown, key=lambda pair: pair[0])[1]
    return max(allowed, key=lambda t: (t[0], -t[1]))[2]


__all__ = ["Budget", "estimate", "measured", "pick", "seconds_left", "spent_seconds", "timed_on"]
