"""The page's claims run by several suites at different budgets (the CPU suite's 6 epochs and the GPU suite's
100, say): one row per claim with each suite's interval and verdict side by side, and whether the verdict changed
with the longer training, so that a "not held" at a small budget is never read without the answer at the larger.

A claim is the same in two suites when every field of it is (text, variant, reference, metric, kind, the figures
it quotes and its margin; the reference being the suite's baseline where the claim names none): a claim judged
against another margin or figure is another claim. The claims of seed_cifar10_cpu.yaml and seed_cifar10_gpu.yaml
are the same.
"""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import Optional

from maelab.ablate.judge import judge
from maelab.ablate.report_claims import mde_cell, report_figures, tested_interval, unit
from maelab.ablate.results import Row
from maelab.ablate.suite import ClaimSpec, SuiteSpec
from maelab.undefined import DASH

ClaimKey = tuple  # a ClaimSpec's fields in order (claim_key)


@dataclass(frozen=True)
class TrainingBudget:
    """What one suite folder trained: ``epochs`` (its baseline's; None before any run started) on ``device``
    ("CPU", "GPU", or "CPU+GPU" for a suite whose runs used both)."""

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
    """What makes a claim the same in two suites: every field of it (text, variant, metric, kind, figures,
    margin), its reference and reference metric as the suite resolves them (default: the suite's baseline, the
    claim's metric)."""
    resolved = replace(claim, reference=claim.reference or spec.baseline,
                       reference_metric=claim.reference_metric or claim.metric)
    return astuple(resolved)


def read_budget(spec: SuiteSpec, folder: Path, rows: list[Row]) -> TrainingBudget:
    """The budget of the suite kept in ``folder``, from what its runs recorded at each start (run_info.json):
    the epochs of its baseline's runs (None before any), and the devices of every run: "GPU" (CUDA), "CPU", or
    both joined with "+" where the runs were split between them."""
    starts = []
    for info in sorted(folder.glob("runs/*/seed*/run_info.json")):
        starts += [{**start, "variant": info.parent.parent.name} for start in json.loads(info.read_text())]
    epochs = [int(s["epochs"]) for s in starts if s["variant"] == spec.baseline and "epochs" in s]
    devices = sorted({_device(str(s.get("device", "cpu"))) for s in starts}) or ["CPU"]
    return TrainingBudget(spec, rows, max(epochs) if epochs else None, "+".join(devices))


def _device(name: str) -> str:
    return "GPU" if name.startswith("cuda") else name.upper()


def _order(b: TrainingBudget) -> tuple:
    """Fewest epochs first (unknown last); at equal epochs the CPU's before the GPU's."""
    return b.epochs is None, b.epochs or 0, b.device != "CPU", b.device


def shared_claims(budgets: list[TrainingBudget]) -> dict[ClaimKey, list[TrainingBudget]]:
    """{claim: the budgets (suites) that judge it, fewest epochs first} for every claim of two or more suites."""
    found: dict[ClaimKey, list[TrainingBudget]] = {}
    for b in budgets:
        for claim in b.suite.claims:
            found.setdefault(claim_key(claim, b.suite), []).append(b)
    return {k: sorted(v, key=_order) for k, v in found.items() if len(v) > 1}


def budget_table(shared: dict[ClaimKey, list[TrainingBudget]], metrics: dict[str, tuple[str, int]],
                 report: bool) -> list[str]:
    """The markdown table of ``shared`` claims: one row each, a Δ and a verdict column per budget (every budget of
    any shared claim, fewest epochs first), and whether the verdict changed from budget to budget. A claim a
    budget does not judge has DASH there; one it judges without runs of both sides yet, "not run yet"; one with
    fewer than 2 seeds a side, why there is no interval and no verdict."""
    lanes = sorted({id(b): b for bs in shared.values() for b in bs}.values(), key=_order)
    figures = "report's" if report else "claimed"
    lines = [f"| claim | {figures} figures | " + " | ".join(f"{b.label}: Δ [95% CI] | verdict" for b in lanes)
             + " | verdict changed with more epochs? |", "| " + " | ".join(["---"] * (3 + 2 * len(lanes))) + " |"]
    for key, budgets in shared.items():
        claim = ClaimSpec(*key)
        label, dec = metrics.get(claim.metric, (claim.metric, 3))
        verdicts: list[tuple[str, TrainingBudget]] = []  # each budget with an interval of the claim, its verdict
        cells = []
        for lane in lanes:
            if lane not in budgets:
                cells.append(f"{DASH} | {DASH}")
            elif not (_has_runs(lane.rows, claim.variant) and _has_runs(lane.rows, claim.reference)):
                cells.append(f"not run yet | {DASH}")
            else:
                judged = judge(claim, lane.suite, lane.rows)
                if judged.comparison.used is None:  # too few seeds so far (a suite under way): no verdict yet
                    cells.append(f"{tested_interval(judged.comparison, dec)} | {DASH}")
                    continue
                verdicts.append((judged.verdict, lane))
                power = mde_cell(judged, dec) + (unit(claim.metric) if judged.mde is not None else "")
                cells.append(f"{tested_interval(judged.comparison, dec)}; 80% power: {power} | **{judged.verdict}**")
        lines.append(f"| {claim.text} ({claim.variant} vs {claim.reference}, {label}) | {report_figures(claim)} | "
                     + " | ".join(cells) + f" | {changed(verdicts)} |")
    return lines


def changed(verdicts: list[tuple[str, TrainingBudget]]) -> str:
    """From (verdict, budget) fewest epochs first: "no (held)", "yes: not held at 6 epochs (CPU) → held at 100
    epochs (GPU)", or DASH while fewer than two budgets have an interval of the claim (a suite not run yet, or
    with fewer than 2 seeds so far). Suites at the same budget are named: their difference is not the epochs'."""
    if len(verdicts) < 2:
        return f"{DASH} (one budget judged so far)"
    if len({v for v, _ in verdicts}) == 1:
        return f"no ({verdicts[0][0]})"
    if len({b.budget for _, b in verdicts}) < len(verdicts):
        return "differs between suites at the same budget: " + ", ".join(f"{v} in {b.label}" for v, b in verdicts)
    return "yes: " + " → ".join(f"{v} at {b.budget}" for v, b in verdicts)


def _has_runs(rows: list[Row], variant: str) -> bool:
    return any(r.variant == variant and r.status == "done" for r in rows)


__all__ = ["TrainingBudget", "budget_table", "changed", "claim_key", "read_budget", "shared_claims"]
