"""The report's closing sections: whether each variant took effect, the failed runs, and how the report was made
(the invocations behind it)."""

from __future__ import annotations

from typing import Any

from maelab.ablate.report_cells import summary_cell
from maelab.ablate.results import Row, by_seed
from maelab.ablate.suite import SuiteSpec


def failures_section(rows: list[Row]) -> str:
    """The failed runs, each with its error (empty when none failed)."""
    failed = [r for r in rows if r.status == "failed"]
    if not failed:
        return ""
    lines = ["## Failed runs (rerun the same `maelab ablate` command to try them again)", ""]
    lines += [f"- {r.variant} seed {r.seed} (`{r.run_dir}`): {r.error}" for r in failed]
    return "\n".join(lines)


def provenance_section(invocations: list[dict[str, Any]]) -> str:
    """Each `maelab ablate` invocation (OUT's environment records): command, start, machine and versions."""
    if not invocations:
        return ""
    lines = ["## How this was made", ""]
    for inv in invocations:
        m, v = inv.get("machine", {}), inv.get("versions", {})
        threads = m.get("torch_threads", "?")
        device = m.get("gpu") or f"{m.get('cpu', '?')} ({m.get('cpu_count', '?')} cores, "\
                                  f"{threads} torch thread{'' if threads == 1 else 's'})"
        lines += [f"- `{inv.get('command', '?')}` — started {inv.get('started', '?')} on {device}; "
                  + ", ".join(f"{k} {val}" for k, val in v.items())]
    lines += ["", "`maelab report DIR` rebuilds this report (DIR/report.md) from results.csv without rerunning "
                  "anything."]
    return "\n".join(lines)


def took_effect_section(spec: SuiteSpec, rows: list[Row]) -> str:
    """Per variant, what shows that its setting reached the training: the mask ratio seen, the final loss, the
    time; and a variant that trained exactly as the baseline named as such (empty before any run logged)."""
    if not any(r.metric == "mask_ratio_seen" and r.value is not None for r in rows):
        return ""
    lines = ["## Did each feature take effect?", "",
             "The mask ratio the encoder actually saw (logged every step, mean over the run), the last epoch's "
             "training loss and the pretraining time:", "",
             "| variant | mask ratio seen | final train loss | pretraining s |", "| --- | --- | --- | --- |"]
    for name in spec.variants:
        lines.append(f"| {name} | {summary_cell(rows, name, 'mask_ratio_seen', 3)} | "
                     f"{summary_cell(rows, name, 'final_loss', 4)} | "
                     f"{summary_cell(rows, name, 'pretrain_seconds', 0)} |")
    same = [name for name in spec.variants if name != spec.baseline and trained_as_baseline(rows, name, spec.baseline)]
    lines += ["", *(f"**{name} changed nothing**: its final training loss equals the baseline's to the last digit "
                    "in every seed, so its overrides did not reach the training (e.g. a feature that starts after the "
                    "last epoch); its differences below are the baseline's own, not a finding." for name in same)]
    return "\n".join(lines).rstrip()


def trained_as_baseline(rows: list[Row], variant: str, baseline: str) -> bool:
    """True when ``variant``'s final training loss equals ``baseline``'s exactly in every seed both finished (at
    least one): the same computation, whatever its overrides say."""
    mine, theirs = by_seed(rows, variant, "final_loss"), by_seed(rows, baseline, "final_loss")
    paired = mine.keys() & theirs.keys()
    return bool(paired) and all(mine[s] == theirs[s] for s in paired)
