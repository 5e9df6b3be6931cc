"""The page's claims run by several suites at different budgets (the CPU suite's 6 epochs and the GPU suite's
100, say): one row per claim with each suite's interval and verdict side by side, and whether the verdict changed
with the longer training, so that a "not held" at a small budget is never read without the answer at the larger.

A claim is the same in two suites when its text, variant, reference, metric and kind are (the reference being the
suite's baseline where the claim names none); the claims of seed_cifar10_cpu.yaml and seed_cifar10_gpu.yaml are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from maelab.ablate.environment import read_invocations
from maelab.ablate.judge import judge
from maelab.ablate.report_claims import mde_cell, report_figures, tested_interval, unit
from maelab.ablate.results import Row
from maelab.ablate.suite import ClaimSpec, SuiteSpec
from maelab.undefined import DASH

ClaimKey = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class TrainingBudget:
    """What one suite folder trained: ``epochs`` (its baseline's optim.epochs; None when no run kept its config)
    on ``device`` ("GPU" when its last invocation ran on one, else "CPU")."""

    suite: SuiteSpec
    rows: list[Row]
    epochs: Optional[int]
    device: str

    @property
    def budget(self) -> str:
        """"6 epochs (CPU)"."""
        return f"{'?' if self.epochs is None else self.epochs} epochs ({self.device})"

    @property
    def label(self) -> str:
        """"seed_cifar10_cpu (6 epochs, CPU)"."""
        return f"{self.suite.name} ({self.budget.replace(' (', ', ')}"


def claim_key(claim: ClaimSpec, spec: SuiteSpec) -> ClaimKey:
    """What makes a claim the same in two suites: text, variant, reference (default: the suite's baseline),
    metric and kind."""
    return claim.text, claim.variant, claim.reference or spec.baseline, claim.metric, claim.kind


def read_budget(spec: SuiteSpec, folder: Path, rows: list[Row]) -> TrainingBudget:
    """The budget of the suite kept in ``folder``: epochs from a run's config.yaml of its baseline (any seed),
    device from environment.json's last invocation."""
    epochs = None
    for config in sorted((folder / "runs" / spec.baseline).glob("seed*/config.yaml")):
        epochs = int(yaml.safe_load(config.read_text())["optim"]["epochs"])
        break
    invocations = read_invocations(folder)
    gpu = invocations[-1].get("machine", {}).get("gpu") if invocations else None
    return TrainingBudget(spec, rows, epochs, "GPU" if gpu else "CPU")


def shared_claims(budgets: list[TrainingBudget]) -> dict[ClaimKey, list[TrainingBudget]]:
    """{claim: the budgets (suites) that judge it, fewest epochs first} for every claim of two or more suites."""
    found: dict[ClaimKey, list[TrainingBudget]] = {}
    for b in budgets:
        for claim in b.suite.claims:
            found.setdefault(claim_key(claim, b.suite), []).append(b)
    order = {"CPU": 0, "GPU": 1}  # at equal epochs the CPU's first: the GPU suite at 6 epochs sits between
    return {k: sorted(v, key=lambda b: (b.epochs is None, b.epochs or 0, order[b.device])) for k, v in found.items()
            if len(v) > 1}


def budget_table(shared: dict[ClaimKey, list[TrainingBudget]], metrics: dict[str, tuple[str, int]],
                 report: bool) -> list[str]:
    """The markdown table of ``shared`` claims: one row each, a Δ and a verdict column per budget, and whether the
    verdict changed from the fewest epochs' to each longer budget's. Budgets are columns in the order of the first
    claim's; a claim a budget does not judge has DASH there."""
    lanes = next(iter(shared.values()))
    lanes = [*lanes, *[b for bs in shared.values() for b in bs if b not in lanes]]
    head = f"| claim | {'report' if report else 'claimed'}'s figures | " + " | ".join(
        f"{b.label}: Δ [95% CI] | verdict" for b in lanes) + " | verdict changed with more epochs? |"
    lines = [head.replace("claimed's", "claimed"), "| " + " | ".join(["---"] * (3 + 2 * len(lanes))) + " |"]
    for key, budgets in shared.items():
        claim = next(c for c in budgets[0].suite.claims if claim_key(c, budgets[0].suite) == key)
        label, dec = metrics.get(claim.metric, (claim.metric, 3))
        verdicts: list[tuple[str, TrainingBudget]] = []  # each budget that ran the claim, with its verdict
        cells = []
        for lane in lanes:
            if lane not in budgets or not (_has_runs(lane.rows, claim.variant) and _has_runs(lane.rows, key[2])):
                cells.append(f"{'not run yet' if lane in budgets else DASH} | {DASH}")
                continue
            judged = judge(next(c for c in lane.suite.claims if claim_key(c, lane.suite) == key), lane.suite, lane.rows)
            if judged.comparison.used is not None:  # too few seeds so far (a suite under way) changes nothing yet
                verdicts.append((judged.verdict, lane))
            power = mde_cell(judged, dec) + (unit(claim.metric) if judged.mde is not None else "")
            cells.append(f"{tested_interval(judged.comparison, dec)} (80% power: {power}) | **{judged.verdict}**")
        lines.append(f"| {claim.text} ({claim.variant} vs {key[2]}, {label}) | {report_figures(claim)} | "
                     + " | ".join(cells) + f" | {changed(verdicts)} |")
    return lines


def changed(verdicts: list[tuple[str, TrainingBudget]]) -> str:
    """From (verdict, budget) fewest epochs first: "no (held)", "yes: not held at 6 epochs (CPU) → held at 100
    epochs (GPU)", or DASH while fewer than two budgets have an interval of the claim (a suite not run yet, or
    with fewer than 2 seeds so far)."""
    if len(verdicts) < 2:
        return f"{DASH} (one budget judged so far)"
    if len({v for v, _ in verdicts}) == 1:
        return f"no ({verdicts[0][0]})"
    return "yes: " + " → ".join(f"{v} at {b.budget}" for v, b in verdicts)


def _has_runs(rows: list[Row], variant: str) -> bool:
    return any(r.variant == variant and r.status == "done" for r in rows)


__all__ = ["TrainingBudget", "budget_table", "changed", "claim_key", "read_budget", "shared_claims"]
