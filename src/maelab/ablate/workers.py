"""Several ablation workers on one machine: each a `maelab ablate --worker` process with its own CPU threads,
taking unclaimed runs of the same suite folder (see claims.py). On a 2-core CPU, two 1-thread workers keep
both cores busy without the thread synchronisation that slows one 2-thread process when the machine is shared.
On a GPU, workers share the card: a small model's step leaves most of it idle (host-bound), so two or three
runs at once finish a suite sooner; the CPU cores (torch threads, inductor's compile workers) are split between
them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional

from maelab.ablate.budget import Budget


def worker_command(suite: Path, out: Path, seeds: int, threads: int, workers: int,
                   budget: Optional[Budget] = None) -> list[str]:
    timed = ["--time-budget", repr(budget.seconds), "--deadline", repr(budget.deadline)] if budget else []
    return [sys.executable, "-m", "maelab", "ablate", str(suite), "--out", str(out), "--seeds", str(seeds),
            "--threads", str(threads), "--worker", str(workers), *timed]


def maelab_pythonpath() -> str:
    """$PYTHONPATH with the folder holding this maelab package first, so that child processes (workers, cluster
    jobs) import this checkout's code."""
    src = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def worker_environment(workers: int) -> dict[str, str]:
    """The workers' environment: this checkout's code first, and the cores split between them for inductor's
    compile workers too (several workers sharing one GPU each compile their steps at the same time)."""
    env = {**os.environ, "PYTHONPATH": maelab_pythonpath()}
    env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(default_threads(workers)))
    return env


class WorkersStopped(Exception):
    """The workers were stopped by a signal (each saved its run's checkpoint): the stage is not complete."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}; each worker saved its run's checkpoint")


def run_workers(suite: Path, out: Path, seeds: int, workers: int, threads: Optional[int] = None,
                budget: Optional[Budget] = None) -> int:
    """Start ``workers`` worker processes and wait for them; SIGINT/SIGTERM are passed on (each worker saves its
    run's checkpoint and stops). With a ``budget`` every worker stops at its deadline. Returns the first non-zero
    exit code, else 0; raises WorkersStopped when a signal came (the workers exit 0 then, yet runs are left)."""
    threads = threads or default_threads(workers)
    env = worker_environment(workers)
    command = worker_command(suite, out, seeds, threads, workers, budget)
    procs = [subprocess.Popen(command, env=env) for _ in range(workers)]
    signals: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        signals.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [p.wait() for p in procs]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if signals:
        raise WorkersStopped(signals[0])
    return next((c for c in codes if c != 0), 0)
