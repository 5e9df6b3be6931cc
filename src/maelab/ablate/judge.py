"""A claim judged on an ablation's rows: its comparison (paired where the seeds pair), verdict and power."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from maelab.ablate.power import mde, seeds_needed
from maelab.ablate.results import Row, by_seed
from maelab.ablate.stats import Comparison, compare, verdict
from maelab.ablate.suite import ClaimSpec, SuiteSpec


@dataclass(frozen=True)
class Judged:
    """A claim judged on the suite's rows."""

    claim: ClaimSpec
    reference: str
    comparison: Comparison
    verdict: str
    target: float  # the effect the claim is about: the claimed gain of a *better* claim, else its margin
    mde: Optional[float]  # None with fewer than 2 seeds
    seeds_needed: Optional[int]  # None with fewer than 2 seeds, or beyond power.MAX_SEEDS


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
    powered = c.sd is not None and c.n >= 2
    return Judged(claim, reference, c, verdict(claim.kind, c.used, claimed_gain(claim), claim.margin), target,
                  mde(claim.kind, c.sd, c.n, c.test) if powered else None,
                  seeds_needed(claim.kind, c.sd, target, c.test) if powered else None)
