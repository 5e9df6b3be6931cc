"""Fair timing in one process: contenders run alternately, round after round, so that they share the machine's
load; and the device's measured matmul peak, timed as one more contender.

Used by bench/throughput.py (import it with bench/ on sys.path, as running a script from bench/ does).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class Contender:
    """One timed thing: ``fn(i)`` does call ``i``; each call processes ``images`` images and ``flops`` FLOPs."""

    name: str
    fn: Callable[[int], object]
    images: int
    flops: float  # per call
    seconds: list[float] = field(default_factory=list)  # per call, one entry per round

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    @property
    def img_per_s(self) -> float:
        return self.images / self.median_seconds

    @property
    def flop_per_s(self) -> float:
        return self.flops / self.median_seconds


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(contenders: list[Contender], device: torch.device, rounds: int, steps: int, warmup: int,
              log: Callable[[str], None] = print, clock: Callable[[], float] = time.perf_counter) -> None:
    """``warmup`` untimed calls of each, then ``rounds`` rounds of ``steps`` timed calls of each in turn.

    Appends each round's seconds per call to ``contender.seconds``. The clock stops after a device sync, and
    the calls inside a round are not synchronised one by one (as in training). ``clock`` is wall time; on a
    CPU shared with other jobs, ``time.process_time`` with one thread counts only this process's own seconds.
    """
    for c in contenders:
        for i in range(warmup):
            c.fn(i)
    synchronize(device)
    for r in range(rounds):
        line = []
        for c in contenders:
            start = clock()
            for i in range(steps):
                c.fn(warmup + r * steps + i)
            synchronize(device)
            c.seconds.append((clock() - start) / steps)
            per_s = 1.0 / c.seconds[-1]
            rate = f"{c.images * per_s:.0f} img/s" if c.images else f"{c.flops * per_s / 1e9:.0f} GFLOP/s"
            line.append(f"{c.name} {rate}")
        log(f"round {r}: " + ", ".join(line))


def matmul_peak(device: torch.device, size: int, dtype: torch.dtype = torch.float32,
                reps: int = 4) -> Contender:
    """The device's matmul rate: ``reps`` products of two ``size``² matrices per call (2·size³ FLOPs each)."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=gen).to(dtype)
    b = torch.randn(size, size, device=device, generator=gen).to(dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)

    def fn(_: int) -> None:
        for _ in range(reps):
            torch.mm(a, b, out=out)

    return Contender(f"matmul {size}² {str(dtype).removeprefix('torch.')}", fn, 0, 2.0 * size**3 * reps)
