"""Run a suite: every variant × seed pretrained and evaluated into its own run directory, resumably.

A finished run (RUN_DIR/ablate.json says done) is skipped; an interrupted one resumes from its checkpoint and
skips the evaluations it already wrote; a failed one is recorded with its error and the others go on (it is
tried again next time). results.csv and report.md are rebuilt after every run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import yaml

from maelab.ablate.budget import Budget, measured, pick, seconds_left, timed_on
from maelab.ablate.claims import claimed
from maelab.ablate.environment import record_invocation
from maelab.ablate.results import (
    FLOOR,
    RESULTS_NAME,
    SCRATCH,
    SUITE_NAME,
    Row,
    eval_rows,
    failed_row,
    not_an_ablation,
    read_status,
    run_dir_of,
    seed_of,
    training_rows,
    write_probe_protocols,
    write_results,
    zero_pred_rows,
)
from maelab.ablate.reuse import count_matches, read_sources
from maelab.ablate.run_one import Plan, minutes, run_timed, stages
from maelab.ablate.suite import Suite, SuiteSpec, check_data_found, suite_from_dict
from maelab.atomic import write_text_atomic
from maelab.config import to_dict
from maelab.config.loading import load_yaml
from maelab.engine.pretrain import notes_said_once
from maelab.engine.signals import RunInterrupted, set_deadline
from maelab.errors import UserError, require_folder


def plan_runs(suite: Suite, out: Path) -> list[Plan]:
    """Seed-major order (every variant of seed 0 first), so a partial suite is balanced across variants."""
    names = suite.variant_names() + ([SCRATCH] if "scratch" in suite.spec.evals else [])
    plans = []
    for seed in suite.seeds:
        for name in names:
            run_dir = run_dir_of(out, name, seed)
            if name == SCRATCH:  # the baseline's model, trained with labels; the evaluations' overrides apply
                cfg = suite.run_config(suite.spec.baseline, seed, run_dir, suite.spec.eval_overrides)
            else:
                cfg = suite.run_config(name, seed, run_dir)
            plans.append(Plan(name, seed, run_dir, cfg, Path(out)))
    return plans


def start_suite(suite: Suite, out: Path, command: Optional[str]) -> tuple[list[Plan], list[Plan]]:
    """What every way of running a suite does first: save it into ``out`` (refusing another suite's folder), record
    ``command`` (None: the caller recorded it), plan its runs. Returns (every run, the unfinished ones)."""
    check_data_found(suite)  # before the folder is made: a wrong path is one error, not a suite of failed runs
    save_suite(suite, out)
    if command is not None:
        record_invocation(out, command)
    plans = plan_runs(suite, out)
    return plans, [p for p in plans if not is_finished(p)]


def pending_runs(suite: Suite, out: Path) -> int:
    """How many of the suite's runs in ``out`` are not finished (all of them in a new folder)."""
    return sum(not is_finished(p) for p in plan_runs(suite, Path(out)))


def is_finished(plan: Plan) -> bool:
    return read_status(plan.run_dir).get("status") == "done"


def run_suite(suite: Suite, out: Path, command: Optional[str], log: Callable[[str], None] = print,
              workers: int = 1, budget: Optional[Budget] = None) -> list[Row]:
    """Run every unfinished variant × seed of ``suite`` into ``out``; returns the rows of results.csv.

    ``command`` is recorded in OUT/environment.json (None: a worker of a recorded invocation); ``workers`` (the
    processes sharing the folder) scales the time-left estimate and keys the measured lengths. With a ``budget``
    the runs start longest first while they fit its time, and the one running at its deadline stops there with
    its checkpoint (budget.py); the suite is then left unfinished, not failed."""
    out = Path(out)
    plans, todo = start_suite(suite, out, command)
    scratch = " + scratch" if "scratch" in suite.spec.evals else ""
    log(f"ablate {suite.name}: {counted(len(plans), 'run')} ({counted(len(suite.variant_names()), 'variant')}"
        f"{scratch} × {counted(len(suite.seeds), 'seed')}), {len(plans) - len(todo)} already finished, into {out}")
    _say_reuse(todo, out, log)
    where, tried, start = timed_on(workers), set(), time.perf_counter()
    previous = set_deadline(budget.deadline if budget else None)
    try:
        with notes_said_once():  # a start note the runs share (too few steps) is said once
            while (plan := _next_plan([p for p in todo if p.run_dir not in tried and not is_finished(p)], budget,
                                      measured(plans, where))) is not None:
                tried.add(plan.run_dir)  # a run that fails (or is held by another worker) is not tried again here
                _run_if_free(plan, suite, plans, [p for p in todo if p.run_dir not in tried and not is_finished(p)],
                             f"elapsed {minutes(time.perf_counter() - start)}", budget, workers, log)
                collect_and_write(suite, out)
    except RunInterrupted as stopped:
        if not stopped.at_deadline:
            raise
        log(f"  {stopped.run_dir.name} of {stopped.run_dir.parent.name} stopped at the time budget (step "
            f"{stopped.step}, checkpoint saved): the next invocation resumes it")
    finally:
        set_deadline(previous)
    if budget is not None:
        left = sum(not is_finished(p) for p in plans)
        log(f"time budget: {counted(left, 'run')} of {len(plans)} left" + (" for a later window" if left else ""))
    return collect_and_write(suite, out)


def _run_if_free(plan: Plan, suite: Suite, plans: list[Plan], others: list[Plan], elapsed: str,
                 budget: Optional[Budget], workers: int, log: Callable[[str], None]) -> None:
    """Claim ``plan`` and run it, after a line with its place, the runs left (``others``) and the time they need;
    nothing when another worker holds it or has finished it meanwhile."""
    with claimed(plan.run_dir) as mine:
        if not mine or is_finished(plan):
            return
        where = timed_on(workers)
        ahead = seconds_left([plan, *others], measured(plans, where), workers)  # this run included
        eta = "no run timed yet" if ahead is None else f"about {minutes(ahead)} left"
        if budget is not None:
            eta += f"; {minutes(max(budget.left(), 0))} of the time budget left"
        log(f"[{plans.index(plan) + 1}/{len(plans)}] {plan.label}: {stages(suite, plan)} "
            f"({elapsed}, {counted(len(others), 'other run')} to go, {eta})")
        run_timed(plan, suite, log, where)


def _next_plan(candidates: list[Plan], budget: Optional[Budget], lengths: dict[str, list[float]]) -> Optional[Plan]:
    """In order without a budget; with one, the longest that fits (budget.pick)."""
    if budget is None:
        return candidates[0] if candidates else None
    return pick(candidates, budget, lengths)


def _say_reuse(todo: list[Plan], out: Path, log: Callable[[str], None]) -> None:
    sources = read_sources(out)
    pretraining = [p.cfg for p in todo if p.variant != SCRATCH and not read_status(p.run_dir).get("pretrained")]
    if sources and pretraining:
        log(f"--reuse: {count_matches(pretraining, sources)} of the {counted(len(pretraining), 'pretraining')} left "
            f"can copy a finished one from {', '.join(map(str, sources))}")


def collect_and_write(suite: Suite, out: Path) -> list[Row]:
    """Rebuild OUT/results.csv from the run folders; returns its rows."""
    rows = collect(suite, out)
    write_results(Path(out) / RESULTS_NAME, rows)
    write_probe_protocols(Path(out), rows)
    return rows


def run_planned(plan: Plan, suite: Suite, log: Callable[[str], None] = print) -> str:
    """Claim and run one run (a cluster job's work): "done", "failed" (recorded), or "held" when another
    process holds it; "done" at once when it had finished. Raises RunInterrupted when stopped by a signal."""
    with claimed(plan.run_dir) as mine:
        if not mine:
            return "held"
        if is_finished(plan):
            return "done"
        log(f"{plan.label}: {stages(suite, plan)}")
        return "done" if run_timed(plan, suite, log, timed_on(1)) else "failed"


def collect(suite: Suite, out: Path) -> list[Row]:
    """Every finished or failed run's rows: metrics per variant × seed (and at the suite's eval_epochs), the
    random-init floor, zero prediction."""
    rows: list[Row] = []
    for plan in plan_runs(suite, out):
        status = read_status(plan.run_dir)
        if status.get("status") == "failed":
            rows.append(failed_row(plan.variant, plan.seed, plan.run_dir, status.get("error", "")))
            continue
        if status.get("status") != "done":
            continue
        rows += training_rows(plan.variant, plan.seed, plan.run_dir)
        rows += eval_rows(plan.variant, plan.seed, plan.run_dir)
        for epoch in suite.spec.eval_epochs:
            rows += eval_rows(plan.variant, plan.seed, plan.run_dir, epoch=epoch)
        if plan.variant == suite.spec.baseline:
            rows += eval_rows(FLOOR, plan.seed, plan.run_dir, random_init=True)
            rows += zero_pred_rows(plan.seed, plan.run_dir)
    return [dataclasses.replace(r, run_dir=_relative(r.run_dir, out)) for r in rows]


def save_suite(suite: Suite, out: Path) -> None:
    """OUT/suite.yaml: the suite's spec (for `maelab report`). A folder holding another suite, or finished runs of
    seeds beyond ``suite``'s (results.csv would drop them), is refused."""
    path = require_folder(out, "--out") / SUITE_NAME
    mine = to_dict(suite.spec)
    if path.is_file():  # read through SuiteSpec: a key added since (its default) is no difference
        theirs = to_dict(suite_from_dict(load_yaml(path.read_text(), str(path)) or {}, path))
        if _without_seeds(theirs) != _without_seeds(mine):
            raise UserError(f"{out} holds an ablation of another suite (or of this one with other settings): "
                            "give another --out, or run the suite that made it")
    beyond = [k for k in finished_seeds(out) if k >= len(suite.seeds)]
    if beyond:
        which = f"seed {beyond[0]}" if len(beyond) == 1 else f"seeds {', '.join(map(str, beyond))}"
        raise UserError(f"{out} holds finished runs of {which}, which {counted(len(suite.seeds), 'seed')} would drop "
                        f"from its results: rerun with --seeds {beyond[-1] + 1} or more, or give another --out "
                        f"(--reuse {out} copies its pretrainings there)")
    write_text_atomic(path, yaml.safe_dump(mine, sort_keys=False))


def finished_seeds(out: Path) -> list[int]:
    """The seeds of which ``out`` holds a finished run (of any variant), in order."""
    found = {seed_of(d) for d in Path(out).glob("runs/*/seed*") if read_status(d).get("status") == "done"}
    return sorted(k for k in found if k is not None)


def saved_suite(out: Path) -> SuiteSpec:
    """The suite saved in the ablation folder ``out``; UserError when ``out`` is not one."""
    path = Path(out) / SUITE_NAME
    if not path.is_file():
        raise UserError(not_an_ablation(Path(out), str(out)))
    return suite_from_dict(load_yaml(path.read_text(), str(path)) or {}, path)


def _without_seeds(spec: dict) -> dict:
    """What tells two suites apart in one folder: all but the seeds and the report's wording (report_claims)."""
    return {k: v for k, v in spec.items() if k not in ("seeds", "report_claims")}


def counted(n: int, noun: str) -> str:
    """"1 run", "2 runs": ``n`` and ``noun``, plural unless ``n`` is 1."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _relative(path: str, out: Path) -> str:
    try:
        return str(Path(path).relative_to(out))
    except ValueError:
        return path

