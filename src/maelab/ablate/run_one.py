"""One run of a suite: pretrain it (or copy an identical finished one, or resume it), write the evaluations it
does not have yet, time it, and record a failure in its ablate.json instead of raising (the suite goes on)."""

from __future__ import annotations

import dataclasses
import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from maelab.ablate.results import SCRATCH, read_status, write_status
from maelab.ablate.reuse import copy_pretraining, find_pretrained, read_sources, warn
from maelab.ablate.suite import FLOOR_EVALUATIONS, Suite
from maelab.config import Config
from maelab.engine.checkpoint import checkpoint_path
from maelab.engine.signals import RunInterrupted
from maelab.errors import UserError
from maelab.run_layout import RunLayout, epoch_tag


@dataclasses.dataclass
class Plan:
    """One run of the suite."""

    variant: str
    seed: int
    run_dir: Path
    cfg: Config
    out: Path  # the ablation folder

    @property
    def label(self) -> str:
        return f"{self.variant} seed {self.seed}"


def record_failure(run_dir: Path, error: str, details: str) -> None:
    """Mark a run failed in its ablate.json (what results.csv and the report list; rerun to try it again)."""
    write_status(run_dir, {**read_status(run_dir), "status": "failed", "error": error, "traceback": details})


def add_seconds(run_dir: Path, seconds: float, where: dict[str, Any]) -> None:
    """Add ``seconds`` to the run's ablate.json ``seconds`` (its length over every window it took) and say where
    they were measured (``timed_on``: the --time-budget estimates use only runs timed on this machine)."""
    status = read_status(run_dir)
    spent = float(status.get("seconds", 0.0)) + seconds
    write_status(run_dir, {**status, "seconds": round(spent, 3), "timed_on": where})


def run_timed(plan: Plan, suite: Suite, log: Callable[[str], None], where: Optional[dict[str, Any]] = None) -> bool:
    """Run ``plan``; True when it finished, False when it failed (recorded). The seconds it took are added to its
    ablate.json when it finishes or is stopped. Raises RunInterrupted when a signal or the deadline stopped it."""
    started = time.perf_counter()
    try:
        run_one(plan, suite)
    except RunInterrupted:
        if where is not None:
            add_seconds(plan.run_dir, time.perf_counter() - started, where)
        raise
    except Exception as err:  # one run's failure is recorded and the suite goes on
        error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        record_failure(plan.run_dir, error, traceback.format_exc())
        log(f"  {plan.label} FAILED: {error} (recorded; rerun the same command to try it again)")
        return False
    seconds = time.perf_counter() - started
    if where is not None:
        add_seconds(plan.run_dir, seconds, where)
    source = read_status(plan.run_dir).get("reused_from")
    reused = f" (pretraining reused from {source})" if source else ""
    log(f"  {plan.label} done in {minutes(seconds)}{reused}")
    return True


def run_one(plan: Plan, suite: Suite) -> None:
    """Pretrain (or resume) one run, then write the evaluations it does not have yet."""
    from maelab.eval import commands

    if plan.variant == SCRATCH:
        if not RunLayout(plan.run_dir).eval_result("scratch").is_file():
            commands.scratch_from_config(dataclasses.replace(plan.cfg, overwrite=True))
        write_status(plan.run_dir, {**read_status(plan.run_dir), "status": "done"})
        return
    status = read_status(plan.run_dir)
    if not status.get("pretrained"):
        kept = {k: v for k, v in status.items() if k in ("seconds", "timed_on")}  # not an earlier failure's
        status = {**kept, "pretrained": True, **pretrain_or_reuse(plan)}
        write_status(plan.run_dir, status)
    overrides = list(suite.spec.eval_overrides)  # the suite's evaluation data: eval/<name>.json, untagged
    for name in [e for e in suite.spec.evals if e != "scratch"]:
        if not RunLayout(plan.run_dir).eval_result(name).is_file():
            getattr(commands, f"run_{name}")(plan.run_dir, overrides, tag_data=False)
        for epoch in suite.spec.eval_epochs:  # the kept checkpoints the suite asks for (checked by load_suite)
            if not RunLayout(plan.run_dir).eval_result(name, tag=epoch_tag(epoch)).is_file():
                getattr(commands, f"run_{name}")(plan.run_dir, overrides, f"epoch:{epoch}", tag_data=False)
    if suite.spec.floor and plan.variant == suite.spec.baseline:
        for name in [e for e in suite.spec.evals if e in FLOOR_EVALUATIONS]:
            if not RunLayout(plan.run_dir).eval_result(name, random_init=True).is_file():
                getattr(commands, f"run_{name}")(plan.run_dir, overrides, random_init=True, tag_data=False)
    write_status(plan.run_dir, {**status, "status": "done"})


def pretrain_or_reuse(plan: Plan) -> dict[str, str]:
    """Copy the pretraining of an identical run of the --reuse folders (returns {"reused_from": its folder}), or
    train it here (returns {})."""
    source = find_pretrained(plan.cfg, read_sources(plan.out))
    if source is not None:
        try:
            return {"reused_from": copy_pretraining(source, plan.cfg)}
        except (UserError, OSError) as err:
            warn(f"--reuse: copying {source} failed ({str(err).splitlines()[0]}); {plan.label} trains here instead")
            shutil.rmtree(RunLayout(plan.run_dir).checkpoints, ignore_errors=True)
    pretrain_or_resume(plan)
    return {}


def pretrain_or_resume(plan: Plan) -> None:
    """Resume from the run's checkpoint when it has one, else start it (replacing a run killed before its first
    checkpoint)."""
    from maelab.engine.pretrain import pretrain, resume
    from maelab.engine.resume_checks import NothingToTrain
    from maelab.eval.monitors import epoch_hooks

    if checkpoint_path(plan.run_dir).is_file():
        try:
            resume(plan.run_dir, [], monitors=epoch_hooks)  # a suite's run trains to its end
        except NothingToTrain:  # it had, but was stopped before its status said so
            pass
    else:
        pretrain(dataclasses.replace(plan.cfg, overwrite=True), monitors=epoch_hooks)


def stages(suite: Suite, plan: Plan) -> str:
    """What a run will do, for the progress line: "pretrain → probe, knn (+ random-init floor)"."""
    if plan.variant == SCRATCH:
        return "train from scratch with labels"
    evals = [e for e in suite.spec.evals if e != "scratch"]
    floor = " (+ random-init floor)" if suite.spec.floor and plan.variant == suite.spec.baseline else ""
    epochs = f" (also at epochs {', '.join(map(str, suite.spec.eval_epochs))})" if suite.spec.eval_epochs else ""
    return f"pretrain → {', '.join(evals)}{epochs}{floor}"


def minutes(seconds: float) -> str:
    """"42 s" or "3.5 min"."""
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
