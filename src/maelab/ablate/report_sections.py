"""The report's closing sections: the failed runs, and how the report was made (the invocations behind it)."""

from __future__ import annotations

from typing import Any

from maelab.ablate.results import Row


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
