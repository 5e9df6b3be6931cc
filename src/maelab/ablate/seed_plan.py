"""Seeds on demand (``maelab ablate SUITE --seeds auto``): a pilot of 3 seeds, then one fixed second stage.

After the pilot, each claim's seeds are the fewest whose minimum detectable effect at 80% power reaches the
claim's own gain or margin (:mod:`maelab.ablate.power`), from the spread the pilot measured; the suite runs the
largest of those, at least the pilot's and at most ``--max-seeds``. The plan is written once, into
OUT/seed_plan.json, and never revised: a rerun of the same command (after an interruption, or on another day)
runs to the planned seeds, it does not look at the results again. The second stage depends on the pilot's
spread only, never on its differences, which keeps the false-positive rate of each one-sided verdict near its
nominal 2.5% (3-4% where the spread is near the claim's effect; an internal pilot: Wittes & Brittain 1990;
docs/ablation.md measures it by simulation).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from maelab.ablate.judge import judge
from maelab.ablate.power import BEYOND
from maelab.ablate.results import Row
from maelab.ablate.suite import Suite
from maelab.atomic import write_text_atomic
from maelab.errors import UserError

PILOT_SEEDS = 3
PLAN_NAME = "seed_plan.json"
DEFAULT_MAX_SEEDS = 10


def read_plan(out: Path) -> Optional[dict[str, Any]]:
    path = Path(out) / PLAN_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def plan_seeds(suite: Suite, out: Path, rows: list[Row], max_seeds: int) -> dict[str, Any]:
    """The second stage from the pilot's rows, written to OUT/seed_plan.json; returns the plan.

    Raises UserError when a pilot run failed (its spread is unknown until it is rerun)."""
    failed = sorted({f"{r.variant} seed {r.seed}" for r in rows if r.status == "failed"})
    if failed:
        raise UserError(f"the pilot's runs {', '.join(failed)} failed: rerun the same command to retry them; the "
                        "seeds are planned once the pilot is complete")
    claims = []
    for claim in suite.spec.claims:
        j = judge(claim, suite.spec, rows)
        needed, why = j.seeds_needed, j.undefined.get("seeds_needed", "")
        measured = needed is not None or why == BEYOND  # a spread to plan from (none: see judge.Judged)
        claims.append({"text": claim.text, "metric": claim.metric, "kind": claim.kind, "target": j.target,
                       "test": j.comparison.test, "pilot_sd": j.comparison.sd, "pilot_seeds": j.comparison.n,
                       "pilot_mde": j.mde, "seeds_needed": needed, "measured": measured,
                       "capped": measured and (needed is None or needed > max_seeds),
                       **({} if measured else {"not_planned": why})})
    # a claim whose metric the pilot did not measure, or measured without any spread, cannot ask for seeds; one
    # beyond 1,000 seeds takes the cap
    wanted = [c["seeds_needed"] or max_seeds for c in claims if c["measured"]]
    seeds = min(max_seeds, max([PILOT_SEEDS, *wanted]))
    plan = {"pilot_seeds": PILOT_SEEDS, "max_seeds": max_seeds, "seeds": seeds, "claims": claims,
            "made": time.strftime("%Y-%m-%d %H:%M:%S"),
            "rule": "fewest seeds whose minimum detectable effect at 80% power reaches each claim's gain or "
                    "margin, from the pilot's spread; the largest over claims, capped; fixed once written"}
    write_text_atomic(Path(out) / PLAN_NAME, json.dumps(plan, indent=2))
    return plan


def describe(plan: dict[str, Any]) -> str:
    """One line per claim and the seeds chosen, for the terminal."""
    lines = [f"seed plan ({PLAN_NAME}): {plan['seeds']} seeds (pilot {plan['pilot_seeds']}, cap {plan['max_seeds']})"]
    for c in plan["claims"]:
        if not c["measured"]:
            why = c.get("not_planned") or f"the pilot has no 2 seeds of {c['metric']} on both sides"
            lines.append(f"  {c['text']}: not planned ({why})")
            continue
        need = c["seeds_needed"] if c["seeds_needed"] is not None else "more than 1,000"
        cap = " (capped)" if c["capped"] else ""
        lines.append(f"  {c['text']}: {need} seeds for {c['target']:.2f}{cap}")
    return "\n".join(lines)


def plan_line(plan: Optional[dict[str, Any]]) -> str:
    """The report's line on how the number of seeds was chosen (empty unless ``--seeds auto`` chose it)."""
    if not plan:
        return ""
    return (f"Seeds chosen by `--seeds auto` ({PLAN_NAME}): a pilot of {plan['pilot_seeds']}, then "
            f"{plan['seeds']} in all (cap {plan['max_seeds']}), the fewest whose minimum detectable effect at 80% "
            "power reaches each claim's gain or margin from the pilot's spread; fixed once, never revised "
            "(docs/ablation.md gives this procedure's error rates).")
