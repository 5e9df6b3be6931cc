"""The page's claims run by several suites at different budgets (the CPU suite's 6 epochs and the GPU suite's
100, say): one row per claim with each suite's interval and verdict side by side, and whether the verdict changed
from budget to budget, so that a "not held" at a small budget is never read without the answer at the larger.
Where the suites differ in more than their epochs (recipe.py), the table's note says in what.

A claim is the same in two suites when it is the same in every field (:func:`claim_key`).
"""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import Any, Optional

from maelab.ablate.judge import judge
from maelab.ablate.recipe import baseline_config, differences, differences_line, recipe_of
from maelab.ablate.report_claims import mde_cell, report_figures, tested_interval, unit
from maelab.ablate.results import Row
from maelab.ablate.suite import ClaimSpec, SuiteSpec
from maelab.undefined import DASH

ClaimKey = tuple  # a ClaimSpec's fields in order (claim_key)
DECIDED = ("held", "not held")


@dataclass(frozen=True, eq=False)
class TrainingBudget:
    """What one suite folder trained: ``epochs`` (its baseline's optim.epochs; None where no baseline run kept a
    readable config.yaml) on ``device`` ("CPU", "GPU", "CPU+GPU" for a suite whose runs used both, "?" where no
    run recorded one), with its ``recipe`` (recipe.py; None as for the epochs). Compared by identity."""

    suite: SuiteSpec
    rows: list[Row]
    epochs: Optional[int]
    device: str
    recipe: Optional[dict[str, Any]] = None

    @property
    def budget(self) -> str:
        """"6 epochs (CPU)"."""
        return f"{self._epochs} ({self.device})"

    @property
    def label(self) -> str:
        """"seed_cifar10_cpu (6 epochs, CPU)"."""
        return f"{self.suite.name} ({self._epochs}, {self.device})"

    @property
    def _epochs(self) -> str:
        return f"{'?' if self.epochs is None else self.epochs} epochs"


def claim_key(claim: ClaimSpec, spec: SuiteSpec) -> ClaimKey:
    """What makes a claim the same in two suites: every field of it (text, variant, metric, kind, the figures it
    quotes, margin), with its reference and reference metric as the suite resolves them (default: the suite's
    baseline, the claim's metric). A claim judged against another margin or figure is another claim."""
    resolved = replace(claim, reference=claim.reference or spec.baseline,
                       reference_metric=claim.reference_metric or claim.metric)
    return astuple(resolved)


def read_budget(spec: SuiteSpec, folder: Path, rows: list[Row]) -> TrainingBudget:
    """The budget of the suite kept in ``folder``: the epochs and recipe of its baseline's run config, and the
    devices its runs recorded at each start (run_info.json; an unreadable file is skipped)."""
    config = baseline_config(spec, folder)
    epochs = (config.get("optim") or {}).get("epochs") if config else None
    devices = sorted({_device(start) for info in sorted(folder.glob("runs/*/seed*/run_info.json"))
                      for start in _starts(info)})
    return TrainingBudget(spec, rows, epochs if isinstance(epochs, int) else None, "+".join(devices) or "?",
                          recipe_of(config, spec) if config else None)


def _starts(info: Path) -> list[dict[str, Any]]:
    try:
        starts = json.loads(info.read_text())
    except (OSError, ValueError):
        return []
    return [s for s in starts if isinstance(s, dict)] if isinstance(starts, list) else []


def _device(start: dict[str, Any]) -> str:
    name = str(start.get("device", "?"))
    return "GPU" if name.startswith("cuda") else name.upper()


def _order(b: TrainingBudget) -> tuple:
    """Fewest epochs first (unknown last); at equal epochs the CPU's before the GPU's."""
    return b.epochs is None, b.epochs or 0, b.device != "CPU", b.device


def shared_claims(budgets: list[TrainingBudget]) -> dict[ClaimKey, list[TrainingBudget]]:
    """{claim: the budgets (suites) that judge it, fewest epochs first} for every claim of two or more suites (a
    claim a suite lists twice counts once)."""
    found: dict[ClaimKey, list[TrainingBudget]] = {}
    for b in budgets:
        for claim in b.suite.claims:
            judged_by = found.setdefault(claim_key(claim, b.suite), [])
            if b not in judged_by:
                judged_by.append(b)
    return {k: sorted(v, key=_order) for k, v in found.items() if len(v) > 1}


def budget_table(shared: dict[ClaimKey, list[TrainingBudget]], metrics: dict[str, tuple[str, int]],
                 report: bool) -> list[str]:
    """The markdown table of ``shared`` claims: one row each, a Δ and a verdict column per budget (every budget of
    any shared claim, fewest epochs first), whether the verdict changed across them (:func:`changed`), and a note
    per suite whose recipe differs from the first's in more than its epochs. A claim a budget does not judge has
    DASH there; one it judges without runs of both sides yet, "not run yet"; one with fewer than 2 seeds a side,
    why there is no interval, and no verdict."""
    lanes = sorted(dict.fromkeys(b for bs in shared.values() for b in bs), key=_order)
    figures = "report's" if report else "claimed"
    lines = [f"| claim | {figures} figures | " + " | ".join(f"{b.label}: Δ [95% CI] | verdict" for b in lanes)
             + " | verdict across budgets |", "| " + " | ".join(["---"] * (3 + 2 * len(lanes))) + " |"]
    for key, budgets in shared.items():
        claim = ClaimSpec(*key)
        cells, verdicts = zip(*(_cell(claim, lane, budgets, metrics) for lane in lanes), strict=True)
        judged = [(v, lane) for v, lane in zip(verdicts, lanes, strict=True) if v is not None]
        label = metrics.get(claim.metric, (claim.metric, 3))[0]
        lines.append(f"| {claim.text} ({claim.variant} vs {claim.reference}, {label}) | {report_figures(claim)} | "
                     + " | ".join(cells) + f" | {changed(judged, len(budgets))} |")
    return lines + _recipe_notes(lanes)


def _cell(claim: ClaimSpec, lane: TrainingBudget, budgets: list[TrainingBudget],
          metrics: dict[str, tuple[str, int]]) -> tuple[str, Optional[str]]:
    """(the "Δ | verdict" cells of ``lane``, its verdict or None where it has none)."""
    if lane not in budgets:
        return f"{DASH} | {DASH}", None
    if not (_has_runs(lane.rows, claim.variant) and _has_runs(lane.rows, str(claim.reference))):
        return f"not run yet | {DASH}", None
    dec = metrics.get(claim.metric, (claim.metric, 3))[1]
    judged = judge(claim, lane.suite, lane.rows)
    if judged.comparison.used is None:  # too few seeds so far (a suite under way): no verdict yet
        return f"{tested_interval(judged.comparison, dec)} | {DASH}", None
    power = mde_cell(judged, dec) + (unit(claim.metric) if judged.mde is not None else "")
    return f"{tested_interval(judged.comparison, dec)}; 80% power: {power} | **{judged.verdict}**", judged.verdict


def changed(judged: list[tuple[str, TrainingBudget]], suites: int) -> str:
    """The last cell, from (verdict, budget) fewest epochs first, ``suites`` judging the claim in all:
    "no (held)"; "yes: not held at 6 epochs (CPU) → held at 100 epochs (GPU)" (held and not held both occur);
    "not reversed: ..." (inconclusive at some budget, never held against not held); "differs between suites at
    the same budget: ..."; "cannot tell: ..." where a suite's epochs are unknown; DASH while fewer than two
    budgets have a verdict."""
    if len(judged) < 2:
        return f"{DASH} ({len(judged)} of {suites} budgets judged so far)"
    listed = ", ".join(f"{v} in {b.label}" for v, b in judged)
    if len({v for v, _ in judged}) == 1:
        return f"no ({judged[0][0]})"
    unknown = [b.suite.name for _, b in judged if b.epochs is None]
    if unknown:
        return f"cannot tell: the epochs of {', '.join(unknown)} are unknown ({listed})"
    by_budget: dict[str, set[str]] = {}
    for v, b in judged:
        by_budget.setdefault(b.budget, set()).add(v)
    if any(len(vs) > 1 for vs in by_budget.values()):
        return f"differs between suites at the same budget: {listed}"
    chain = " → ".join(f"{'/'.join(sorted(vs))} at {budget}" for budget, vs in by_budget.items())
    decided = {v for v, _ in judged if v in DECIDED}
    return f"yes: {chain}" if len(decided) > 1 else f"not reversed: {chain}"


def _recipe_notes(lanes: list[TrainingBudget]) -> list[str]:
    """Below the table: what each suite's recipe changes from the first (fewest epochs) suite's, if anything."""
    first = next((b for b in lanes if b.recipe is not None), None)
    notes = [differences_line(first.suite.name, b.suite.name, found) for b in lanes
             if first is not None and b is not first and b.recipe is not None
             and (found := differences(first.recipe, b.recipe))]
    return ["", " ".join(notes)] if notes else []


def _has_runs(rows: list[Row], variant: str) -> bool:
    return any(r.variant == variant and r.status == "done" for r in rows)


__all__ = ["TrainingBudget", "budget_table", "changed", "claim_key", "read_budget", "shared_claims"]
