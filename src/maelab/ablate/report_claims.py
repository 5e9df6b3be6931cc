"""The report's claims section: each claim's interval (paired where the seeds pair), its verdict, and what the
seeds could have seen (the minimum detectable effect, and the seeds the claim's own margin needs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from maelab.ablate.judge import Judged, claimed_gain, judge
from maelab.ablate.power import BEYOND, MAX_SEEDS, POWER
from maelab.ablate.report_resolution import TestImages, resolution
from maelab.ablate.results import Row
from maelab.ablate.stats import Comparison, Difference
from maelab.ablate.suite import ClaimSpec, SuiteSpec
from maelab.undefined import DASH


def unit(metric: str) -> str:
    return " points" if metric.endswith("_top1") else ""


def could_see(j: Judged, decimals: int) -> str:
    """"these 5 seeds could have seen a difference of 1.8 points or more" (or DASH and why there is no MDE)."""
    if j.mde is None:
        return f"{DASH} ({j.undefined.get('mde', '')})"
    value = f"{j.mde:.{decimals}f}{unit(j.claim.metric)}"
    if j.claim.kind == "same":
        return f"these {j.comparison.n} seeds could have shown sameness within ±{value} or wider"
    return f"these {j.comparison.n} seeds could have seen a difference of {value} or more"


def mde_cell(j: Judged, decimals: int) -> str:
    """The MDE ("±1.93" for *same*), or DASH (with "(no spread)" where the seeds measured none)."""
    if j.mde is None:
        return f"{DASH} (no spread)" if _no_spread(j) else DASH
    return f"{'±' if j.claim.kind == 'same' else ''}{j.mde:.{decimals}f}"


def seeds_cell(j: Judged, decimals: int) -> str:
    """"12 for ±1.00" (with the spread it rests on when the differences have none), or why there is no number."""
    aim = f"{'±' if j.claim.kind == 'same' else ''}{j.target:.{decimals}f}"
    if j.seeds_needed is not None:
        return f"{j.seeds_needed} for {aim}" + (" (from each variant's spread: the differences have none)"
                                                 if j.basis else "")
    why = j.undefined.get("seeds_needed", "")
    if j.mde is None and not _no_spread(j):
        return DASH
    return f"more than {MAX_SEEDS:,} for {aim}" if why == BEYOND else f"{DASH} ({why})"


def _no_spread(j: Judged) -> bool:
    """The judging interval exists but has no spread behind it (every seed gave the same difference)."""
    d = j.comparison.used
    return d is not None and not d.decides


def no_spread_note(j: Judged, decimals: int, images: Optional[TestImages] = None) -> str:
    """Why a claim without spread is inconclusive: the seeds' identical differences, the test set's resolution
    (accuracies) and how many seeds would decide, or why that is unknown."""
    d = j.comparison.used
    parts = [d.undefined if d is not None else ""]
    step = resolution(j.claim.metric, images)
    parts += [step] if step else []
    aim = f"{'±' if j.claim.kind == 'same' else ''}{j.target:.{decimals}f}{unit(j.claim.metric)}"
    if j.seeds_needed is not None:
        parts.append(f"about {j.seeds_needed} seeds would decide {aim} at {POWER:.0%} power, from {j.basis}")
    else:
        parts.append(f"the seeds that would decide {aim} are unknown: {j.undefined.get('seeds_needed', '')}")
    return "; ".join(parts)


def interval(d: Optional[Difference], decimals: int) -> str:
    """"+1.20 [+0.40, +2.00]", "+0.00 [–: no spread]" for an interval without spread, or why there is none."""
    if d is None:
        return f"{DASH} (needs 2+ seeds on both sides)"
    if not d.decides:
        return f"{d.diff:+.{decimals}f} [{DASH}: no spread]"
    return f"{d.diff:+.{decimals}f} [{d.low:+.{decimals}f}, {d.high:+.{decimals}f}]"


def tested_interval(c: Comparison, decimals: int) -> str:
    """The judging interval followed by its test's name ("+1.20 [+0.40, +2.00] paired"), or why there is none."""
    return interval(c.used, decimals) + (f" {c.test}" if c.used is not None else "")


def claims_section(spec: SuiteSpec, rows: list[Row], metrics: dict[str, tuple[str, int]],
                   summary_cell: Callable[[list[Row], str, str, int], str],
                   images: Optional[TestImages] = None) -> str:
    """The markdown of the claims (``summary_cell(rows, variant, metric, decimals)`` gives "mean ± std";
    ``images``: the test images of each accuracy metric, :mod:`maelab.ablate.report_resolution`)."""
    if not spec.claims:
        return ""
    whose = "the report gives" if spec.report_claims else "the claim gives"
    lines = [f"## {claims_title(spec)}", "",
             "Verdicts by the 95% interval of (variant − reference): the **paired** t-interval of the per-seed "
             "differences whenever 2 or more seeds ran on both sides (seed k gives every variant the same initial "
             "weights, data order and random draws, so each seed's difference cancels what the seed adds to "
             "both), Welch's otherwise; the rule is fixed, not the narrower of the two. *better*: held if the "
             "interval lies above 0; not held if it lies below the claimed gain (or at or below 0 when "
             f"{whose} no figure); otherwise inconclusive. *same*: held if the interval lies within ± the margin; not "
             "held if it excludes 0 and leaves the margin. An interval without spread (every seed gave the same "
             "difference: tied accuracies on a small test set, say) decides nothing, whatever its sign: "
             f"inconclusive. The last two columns are the power ({POWER:.0%}) of "
             "the seeds run, from their measured spread (docs/ablation.md): the smallest effect they could "
             "have seen, and the seeds the claim's own gain or margin needs." + (REPORT_FIGURES if spec.report_claims
                                                                               else ""), "",
             f"| claim | metric | {figures_head(spec)} | measured: variant / reference | Δ [95% CI] | verdict | "
             "smallest effect seen at 80% power | seeds for the claim's margin |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    judged = [judge(claim, spec, rows) for claim in spec.claims]
    for j in judged:
        claim = j.claim
        label, dec = metrics.get(claim.metric, (claim.metric, 3))
        measured = (f"{summary_cell(rows, claim.variant, claim.metric, dec)} / "
                    f"{summary_cell(rows, j.reference, claim.reference_metric or claim.metric, dec)}")
        d = j.comparison.used
        gain = claimed_gain(claim)
        note = " (smaller than claimed)" if (j.verdict == "held" and claim.kind == "better" and d is not None
                                             and gain is not None and d.high < gain) else ""
        if j.verdict == "inconclusive" and j.mde is not None:
            note = f": {could_see(j, dec)}"
        elif _no_spread(j):
            note = f": {no_spread_note(j, dec, images)}"
        lines.append(f"| {claim.text} ({claim.variant} vs {j.reference}, {claim.kind}"
                     f"{f', margin ±{claim.margin:g}' if claim.kind == 'same' else ''}) | {label} | "
                     f"{report_figures(claim)} | {measured} | {tested_interval(j.comparison, dec)} | "
                     f"**{j.verdict}**{note} | {mde_cell(j, dec)} | {seeds_cell(j, dec)} |")
    return "\n".join(lines + ["", _pairing(judged, metrics)])


def answer_section(spec: SuiteSpec, rows: list[Row], metrics: dict[str, tuple[str, int]]) -> str:
    """The table a report opens with: each claim, the report's figures, maelab's interval, the verdict and the
    smallest effect the seeds could have seen (the details follow in :func:`claims_section`)."""
    if not spec.claims:
        return ""
    return "\n".join(["## The answer", "",
                      ("Each of the report's claims on this suite" if spec.report_claims else
                       "Each claim of this suite") + ", judged by the 95% interval of (variant − reference) "
                      "(paired over seeds where they pair); the last column is the smallest difference these seeds "
                      "could have seen at 80% power. The claims section below gives the rule and the details.", "",
                      answer_head(spec.report_claims), "| --- | --- | --- | --- | --- |",
                      *answer_rows(spec, rows, metrics)])


REPORT_FIGURES = (" The report's own figures come from one seed each, with the full data and its own recipe, so "
                  "compare them with the *differences* here, not the absolute values.")


def claims_title(spec: SuiteSpec) -> str:
    """"The report's claims" for the repo's suites (``report_claims: true``), "The suite's claims" for one's own."""
    return "The report's claims" if spec.report_claims else "The suite's claims"


def figures_head(spec: SuiteSpec) -> str:
    """The column of the figures a claim quotes: the report's (the repo's suites), or "claimed figures"."""
    return _figures_head(spec.report_claims)


def _figures_head(report: bool) -> str:
    return "report's figures" if report else "claimed figures"


def answer_head(report: bool = True) -> str:
    """The head of the answer table; ``report``: the claims are the report's (else the suites' own)."""
    return f"| claim | {_figures_head(report)} | maelab: Δ [95% CI] | verdict | smallest effect seen at 80% power |"



def answer_rows(spec: SuiteSpec, rows: list[Row], metrics: dict[str, tuple[str, int]]) -> list[str]:
    """One markdown row of :func:`answer_head`'s table per claim of ``spec``."""
    out = []
    for claim in spec.claims:
        j = judge(claim, spec, rows)
        label, dec = metrics.get(claim.metric, (claim.metric, 3))
        mde = mde_cell(j, dec)
        out.append(f"| {claim.text} ({claim.variant} vs {j.reference}, {label}) | {report_figures(claim)} | "
                   f"{tested_interval(j.comparison, dec)} | **{j.verdict}** | "
                   f"{mde + unit(claim.metric) if j.mde is not None else mde} |")
    return out


def _pairing(judged: list[Judged], metrics: dict[str, tuple[str, int]]) -> str:
    """Both intervals of each claim, and the correlation across seeds that makes pairing pay (or not)."""
    lines = ["### Pairing: does it pay?", "",
             "A paired interval is narrower than Welch's when the two variants move together across seeds "
             "(Pearson's r near 1); with r near 0 pairing gains nothing and costs degrees of freedom.", "",
             "| claim | seeds paired | r across seeds | paired Δ [95% CI] | Welch Δ [95% CI] | width paired / Welch |",
             "| --- | --- | --- | --- | --- | --- |"]
    for j in judged:
        dec = metrics.get(j.claim.metric, (j.claim.metric, 3))[1]
        c = j.comparison
        r = DASH if c.correlation is None else f"{c.correlation:+.2f}"
        ratio = DASH
        if c.paired is not None and c.paired.decides and c.welch is not None and c.welch.decides \
                and c.welch.high > c.welch.low:
            ratio = f"{(c.paired.high - c.paired.low) / (c.welch.high - c.welch.low):.2f}"
        paired_n = c.n if c.test == "paired" else 0
        lines.append(f"| {j.claim.text} | {paired_n} | {r} | {interval(c.paired, dec)} | "
                     f"{interval(c.welch, dec)} | {ratio} |")
    return "\n".join(lines)


def report_figures(claim: ClaimSpec) -> str:
    if claim.claimed is None:
        return "–"
    if claim.claimed_reference is None:
        return f"{claim.claimed:g}"
    return f"{claim.claimed:g} vs {claim.claimed_reference:g} ({claim.claimed - claim.claimed_reference:+.2f})"
