"""bench/throughput.py's JSON, written while it runs: after each contender's warm-up starts, after the warm-up and
after every round (atomically), so that a run stopped at its time limit leaves its figures so far.

What the JSON holds besides the machine and the arguments: ``complete`` (false until the last preset's last round)
and per preset ``phase`` (warm-up | rounds | done), ``rounds_done`` of ``rounds_planned``, ``warming_up`` (the
contender whose first call, which may compile for minutes, is running, and since when in seconds from the start)
and ``rows``. Each row has the timed figures once a round is done (bench/timing.py's ``table``), and always:
``first_call_s`` (the first warm-up call's wall time: the compile), ``later_warmup_s``, ``warmup_img_per_s`` (a
rough rate from the later warm-up calls, a figure even when no round finished), ``compile`` (what torch.compile
did for that contender: bench/compile_stats.py), ``status`` (ok | failed | not run yet) and, when failed, ``reason``
with the measured figures moved under ``unverified`` (a row meant to replay CUDA graphs where none ran).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any, Optional

import torch
from compile_stats import accumulate, cuda_graph_failure, difference, snapshot
from jsonio import write_json
from timing import Contender, table

FIGURES = ("img_per_s", "img_per_s_rounds", "gflop_per_s", "utilisation", "vs_hf", "vs_hf_rounds",
           "warmup_img_per_s")  # what a failed row must not present as a plausible figure


class Recorder:
    """The results of one throughput.py run; the observer of :func:`timing.alternate` for each preset."""

    def __init__(self, results: dict[str, Any], path: Optional[str], device: torch.device) -> None:
        self.results, self.path, self.device = results, path, device
        self.start = time.perf_counter()
        self.entry: dict[str, Any] = {}
        self.contenders: list[Contender] = []
        self.peak: Optional[Contender] = None
        self.stats: dict[str, dict[str, Any]] = {}
        self.mark = snapshot(device)
        results["complete"] = False

    def begin(self, preset: str, extra: dict[str, Any], contenders: list[Contender], peak: Contender,
              rounds: int) -> None:
        """A preset's contenders are built: its entry, written before any of them runs."""
        self.contenders, self.peak, self.stats = contenders, peak, {}
        self.entry = {**extra, "phase": "warm-up", "rounds_planned": rounds, "rounds_done": 0, "warming_up": None}
        self.results["presets"][preset] = self.entry
        self.entry["rows"] = self.rows()
        self.save()

    def started(self, contender: Contender) -> None:
        self.mark = snapshot(self.device)
        self.entry["warming_up"] = {"name": contender.name, "since_s": round(time.perf_counter() - self.start, 1)}
        self.save()

    def ran(self, contender: Contender) -> None:
        now = snapshot(self.device)
        if contender is not self.peak:
            self.stats[contender.name] = accumulate(self.stats.get(contender.name), difference(now, self.mark))
        self.mark = now

    def progressed(self, rounds_done: int) -> None:
        self.entry.update(phase="rounds", rounds_done=rounds_done, warming_up=None, rows=self.rows())
        if rounds_done and self.peak is not None:
            self.entry["peak_gflop_per_s"] = self.peak.flop_per_s / 1e9
            self.entry["peak_rounds_gflop_per_s"] = [self.peak.flops / s / 1e9 for s in self.peak.seconds]
        self.save()

    def finish_preset(self) -> None:
        self.entry["phase"] = "done"
        self.save()

    def finish(self) -> None:
        self.results["complete"] = True
        self.save()

    def rows(self) -> list[dict[str, Any]]:
        """Every contender's row as far as it has run."""
        timed: dict[str, dict[str, Any]] = {}
        if self.peak is not None and self.contenders and all(c.seconds for c in self.contenders):
            timed = {row["name"]: row for row in table(self.contenders, self.peak)[1]}
        return [contender_row(c, timed.get(c.name), self.stats.get(c.name), self.device.type)
                for c in self.contenders]

    def failures(self) -> list[str]:
        """One line per failed row of the current preset."""
        return [f"FAILED: {row['name']}: {row['reason']}" for row in self.entry.get("rows", [])
                if row["status"] == "failed"]

    def save(self) -> None:
        """Write the results (nothing without a path), with the load average and the seconds since the start."""
        self.results["machine"]["load_average_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        self.results["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        if self.path:
            write_json(self.path, self.results)


def contender_row(c: Contender, timed: Optional[dict[str, Any]], stats: Optional[dict[str, Any]],
                  device_type: str) -> dict[str, Any]:
    """A contender's row: its timed figures (None before the first round), warm-up seconds, compile figures and
    status; a row meant to replay CUDA graphs where none ran is failed, its figures moved under ``unverified``."""
    later = c.warmup_seconds[1:]
    row: dict[str, Any] = {"name": c.name, **(timed or {"img_per_s": None}),
                           "first_call_s": c.warmup_seconds[0] if c.warmup_seconds else None,
                           "later_warmup_s": later,
                           "warmup_img_per_s": c.images / statistics.median(later) if later and c.images else None,
                           "compile": stats, "status": "ok" if c.warmup_seconds else "not run yet"}
    reason = cuda_graph_failure(stats, device_type) if c.cuda_graphs and c.warmup_seconds else None
    if reason:
        row["unverified"] = {key: row[key] for key in FIGURES if row.get(key) is not None}
        row.update({key: None for key in FIGURES}, status="failed", reason=reason)
    return row


def print_checks(extra: dict[str, Any]) -> None:
    """Parameters side by side and the FLOP count checks."""
    flops = extra["flops"]
    for who, key in (("maelab", "analytic_forward"), ("HF", "analytic_forward_hf")):
        parts = ", ".join(f"{k} {v / 1e6:.2f}" for k, v in flops[key].items())
        counted = flops.get(f"counted_{who.lower()}")
        if counted is not None:
            print(f"{who} forward MFLOP/img, analytic: {parts}; counted by FlopCounterMode: {counted / 1e6:.2f}")
    if "params" in extra:
        print("trainable parameters, maelab / HF: " + ", ".join(f"{p} {a:,}/{b:,}" for p, a, b in extra["params"]))
    if "gan_note" in extra:
        print(extra["gan_note"])
