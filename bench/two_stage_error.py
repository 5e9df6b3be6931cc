"""The error rates of ``maelab ablate --seeds auto`` (a pilot of 3 seeds, then a fixed second stage), by simulation.

Usage: python bench/two_stage_error.py [--reps 20000] [--cap 10] [--json out.json]

Per-seed paired differences are drawn as Normal(δ, σ²); the pilot's 3 set the seeds exactly as
:func:`maelab.ablate.seed_plan.plan_seeds` does (the fewest whose 80%-power MDE reaches the claim's effect, at
least 3, at most ``--cap``), the rest are drawn, and the claim is judged by the paired 95% interval as in the
report. For a *better* claim of effect E: the false "held" rate at δ = 0 (nominal 2.5%, the interval's lower
tail) and the power at δ = E (the plan aims at 80%; a 3-seed pilot estimates σ with 2 degrees of freedom, so it
falls short). For a *same* claim of margin E: the false "held" rate at δ = E (nominal at most 2.5%) and the
power at δ = 0. Each at several σ / E (how noisy the seeds are against what the claim is about).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import stats as sps

from maelab.ablate.power import mde
from maelab.ablate.seed_plan import PILOT_SEEDS


def planned_seeds(sd: np.ndarray, effect: float, kind: str, cap: int) -> np.ndarray:
    """Vectorised plan: the fewest n in [PILOT_SEEDS, cap] with mde(kind, sd, n) <= effect (cap if none)."""
    unit = np.array([mde(kind, 1.0, n) for n in range(PILOT_SEEDS, cap + 1)])  # the MDE scales with sd
    reaches = unit[None, :] * sd[:, None] <= effect
    first = np.where(reaches.any(axis=1), reaches.argmax(axis=1), cap - PILOT_SEEDS)
    return first + PILOT_SEEDS


def held(diffs: np.ndarray, n: np.ndarray, kind: str, effect: float) -> np.ndarray:
    """The verdict "held" of each replicate's paired 95% interval over its first n differences."""
    mask = np.arange(diffs.shape[1])[None, :] < n[:, None]
    mean = (diffs * mask).sum(axis=1) / n
    sd = np.sqrt((((diffs - mean[:, None]) * mask) ** 2).sum(axis=1) / (n - 1))
    half = sps.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    if kind == "better":
        return mean - half > 0
    return (mean - half >= -effect) & (mean + half <= effect)


def rate(kind: str, delta: float, sigma: float, effect: float, cap: int, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    diffs = rng.normal(delta, sigma, size=(reps, cap))
    pilot_sd = diffs[:, :PILOT_SEEDS].std(axis=1, ddof=1)
    n = planned_seeds(pilot_sd, effect, kind, cap)
    return {"held": float(held(diffs, n, kind, effect).mean()), "mean_seeds": float(n.mean())}


def main(argv: Optional[list[str]] = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20000)
    parser.add_argument("--cap", type=int, default=10)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    rows = []
    print("| claim | σ / effect | false 'held' (nominal ≤ 2.5%) | power (aim 80%) | mean seeds |")
    print("| --- | --- | --- | --- | --- |")
    for kind in ("better", "same"):
        for ratio in (0.25, 0.5, 1.0, 2.0):
            null_delta, alt_delta = (0.0, 1.0) if kind == "better" else (1.0, 0.0)
            false = rate(kind, null_delta, ratio, 1.0, args.cap, args.reps, seed=1)
            power = rate(kind, alt_delta, ratio, 1.0, args.cap, args.reps, seed=2)
            rows.append({"kind": kind, "sigma_over_effect": ratio, "cap": args.cap, "reps": args.reps,
                         "false_held": false["held"], "power": power["held"], "mean_seeds": power["mean_seeds"]})
            print(f"| {kind} | {ratio:g} | {false['held']:.2%} | {power['held']:.1%} | {power['mean_seeds']:.1f} |",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
