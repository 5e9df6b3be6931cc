"""Fair timing in one process: contenders run alternately, round after round, so that they share the machine's
load; and the device's measured matmul peak, timed as one more contender.

Used by bench/throughput.py (import it with bench/ on sys.path, as running a script from bench/ does).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import numpy as np
import torch


@dataclass
class Contender:
    """One timed thing: ``fn(i)`` does call ``i``; each call processes ``images`` images and ``flops`` FLOPs."""

    name: str
    fn: Callable[[int], object]
    images: int
    flops: float  # per call
    seconds: list[float] = field(default_factory=list)  # per call, one entry per round
    warmup_seconds: list[float] = field(default_factory=list)  # each warm-up call, synchronised: [0] holds a compile
    compiled: bool = False  # its first call compiles: warmed up after those that do not, so that they have figures
    cuda_graphs: bool = False  # meant to replay CUDA graphs (bench/compile_stats.py checks that they ran)

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


class Observer(Protocol):
    """Told what :func:`alternate` does, outside its clock: to count compiles per contender and save figures."""

    def started(self, contender: Contender) -> None:
        """``contender``'s first warm-up call is about to run (it may compile for minutes)."""

    def ran(self, contender: Contender) -> None:
        """``contender`` finished its warm-up calls, or its timed calls of a round."""

    def progressed(self, rounds_done: int) -> None:
        """Every contender is warm (0), or round ``rounds_done`` is complete."""


class Silent:
    """An observer that does nothing."""

    def started(self, contender: Contender) -> None:
        pass

    def ran(self, contender: Contender) -> None:
        pass

    def progressed(self, rounds_done: int) -> None:
        pass


def warm_up(contenders: list[Contender], device: torch.device, warmup: int,
            observer: Optional[Observer] = None) -> None:
    """``warmup`` calls of each, each timed in wall seconds after a sync (the first one holds any compile); those
    that compile go last, so that a time limit reached while one compiles leaves the others' figures."""
    observer = observer or Silent()
    for c in sorted(contenders, key=lambda c: c.compiled):
        observer.started(c)
        for i in range(warmup):
            start = time.perf_counter()
            c.fn(i)
            synchronize(device)
            c.warmup_seconds.append(time.perf_counter() - start)
        observer.ran(c)
    observer.progressed(0)


def alternate(contenders: list[Contender], device: torch.device, rounds: int, steps: int, warmup: int,
              log: Callable[[str], None] = print, clock: Callable[[], float] = time.perf_counter,
              observer: Optional[Observer] = None) -> None:
    """:func:`warm_up`, then ``rounds`` rounds of ``steps`` timed calls of each in turn.

    Appends each round's seconds per call to ``contender.seconds``. The clock stops after a device sync, and
    the calls inside a round are not synchronised one by one (as in training). ``clock`` is wall time; on a
    CPU shared with other jobs, ``time.process_time`` with one thread counts only this process's own seconds.
    ``observer`` hears of each warm-up and each round (outside the clock).
    """
    observer = observer or Silent()
    warm_up(contenders, device, warmup, observer)
    for r in range(rounds):
        line = []
        for c in contenders:
            start = clock()
            for i in range(steps):
                c.fn(warmup + r * steps + i)
            synchronize(device)
            c.seconds.append((clock() - start) / steps)
            observer.ran(c)
            per_s = 1.0 / c.seconds[-1]
            rate = f"{c.images * per_s:.0f} img/s" if c.images else f"{c.flops * per_s / 1e9:.0f} GFLOP/s"
            line.append(f"{c.name} {rate}")
        log(f"round {r}: " + ", ".join(line))
        observer.progressed(r + 1)


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


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": str(device), "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def table(contenders: list[Contender], peak: Contender) -> tuple[str, list[dict[str, Any]]]:
    """The printed table (markdown) and its rows as dicts."""
    hf = next((c for c in contenders if c.name == "HF ViTMAE"), None)
    rows, lines = [], [
        "| contender | img/s (median) | range over rounds | train GFLOP/img | GFLOP/s | % of matmul peak "
        "| ÷ HF ViTMAE | ÷ HF, median of rounds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in contenders:
        rates = [c.images / s for s in c.seconds]
        compared = hf is not None and c.name.startswith("maelab pretrain") and c.images == hf.images
        row = {"name": c.name, "img_per_s": c.img_per_s, "img_per_s_rounds": rates,
               "gflop_per_img": c.flops / c.images / 1e9, "gflop_per_s": c.flop_per_s / 1e9,
               "utilisation": c.flop_per_s / peak.flop_per_s,
               "vs_hf": c.img_per_s / hf.img_per_s if compared and c.name == "maelab pretrain" else None,
               # each round's ratio (both ran in it, under the same load), then their median
               "vs_hf_rounds": float(np.median([h / s for h, s in zip(hf.seconds, c.seconds, strict=True)]))
               if compared else None}
        rows.append(row)
        ratio = f"{row['vs_hf']:.2f}×" if row["vs_hf"] is not None else ""
        paired = f"{row['vs_hf_rounds']:.2f}×" if row["vs_hf_rounds"] is not None else ""
        lines.append(f"| {c.name} | {c.img_per_s:,.0f} | {min(rates):,.0f}–{max(rates):,.0f} | "
                     f"{row['gflop_per_img']:.4f} | {row['gflop_per_s']:,.1f} | {100 * row['utilisation']:.1f} | "
                     f"{ratio} | {paired} |")
    lines.append(f"| {peak.name} (peak) | | | | {peak.flop_per_s / 1e9:,.1f} | 100 | | |")
    return "\n".join(lines), rows
