"""A claim judged on an ablation's rows: its comparison (paired where the seeds pair), verdict and power."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from maelab.ablate.power import BEYOND, ZERO_SPREAD, mde, seeds_needed
from maelab.ablate.results import Row, by_seed
from maelab.ablate.stats import WELCH, Comparison, compare, verdict
from maelab.ablate.suite import ClaimSpec, SuiteSpec

NEEDS_SEEDS = "needs 2+ seeds on both sides"
NO_BASIS = ("no seed gave a different value on either side, so there is no spread to plan seeds from: run more "
            "seeds or evaluate on more test images")


@dataclass(frozen=True)
class Judged:
    """A claim judged on the suite's rows.

    ``mde`` and ``seeds_needed`` rest on the spread of the judging test (``comparison.sd``); where that spread is
    0 (every seed gave the same difference) the MDE is None, and the seeds needed rest on each variant's spread over
    seeds (Welch's sd, ``basis`` says so) or are None. ``undefined`` maps "mde" / "seeds_needed" to why they are
    None (as :mod:`maelab.undefined` records a null).
    """

    claim: ClaimSpec
    reference: str
    comparison: Comparison
    verdict: str
    target: float  # the effect the claim is about: the claimed gain of a *better* claim, else its margin
    mde: Optional[float]
    seeds_needed: Optional[int]
    basis: str = ""  # what seeds_needed rests on when not the judging test's own spread
    undefined: dict[str, str] = field(default_factory=dict)


def claimed_gain(claim: ClaimSpec) -> Optional[float]:
    if claim.claimed is None or claim.claimed_reference is None:
        return None
    return claim.claimed - claim.claimed_reference


def target_effect(claim: ClaimSpec) -> float:
    """What the claim's seeds must be able to see: the report's own gain (*better*, when it gives figures and a
    gain), else the claim's margin."""
    gain = claimed_gain(claim)
    return gain if claim.kind == "better" and gain is not None and gain > 0 else claim.margin


def judge(claim: ClaimSpec, spec: SuiteSpec, rows: list[Row]) -> Judged:
    """The interval of (variant − reference) on the claim's metric, its verdict and its power."""
    reference = claim.reference or spec.baseline
    c = compare(by_seed(rows, claim.variant, claim.metric),
                by_seed(rows, reference, claim.reference_metric or claim.metric))
    target = target_effect(claim)
    return Judged(claim, reference, c, verdict(claim.kind, c.used, claimed_gain(claim), claim.margin), target,
                  *_power(claim.kind, c, target))


def _power(kind: str, c: Comparison, target: float) -> tuple[Optional[float], Optional[int], str, dict[str, str]]:
    """(mde, seeds_needed, basis, undefined) of :class:`Judged`."""
    if c.sd is None or c.n < 2:
        return None, None, "", {"mde": NEEDS_SEEDS, "seeds_needed": NEEDS_SEEDS}
    if c.sd > 0:
        seeds = seeds_needed(kind, c.sd, target, c.test)
        return mde(kind, c.sd, c.n, c.test), seeds, "", {} if seeds is not None else {"seeds_needed": BEYOND}
    if not c.welch_sd:  # neither the differences nor the variants vary
        return None, None, "", {"mde": ZERO_SPREAD, "seeds_needed": NO_BASIS}
    seeds = seeds_needed(kind, c.welch_sd, target, WELCH)
    basis = f"each variant's spread over seeds (Welch's sd {c.welch_sd:.3g}), as the differences have none"
    return None, seeds, basis, {"mde": ZERO_SPREAD, **({} if seeds is not None else {"seeds_needed": BEYOND})}
