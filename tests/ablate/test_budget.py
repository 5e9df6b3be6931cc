"""--time-budget: runs start longest first while they fit, the one running at the deadline stops with its
checkpoint, and the suite finished later equals one run straight through."""

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from maelab.ablate import load_suite, run_suite
from maelab.ablate import runner as runner_module
from maelab.ablate.budget import Budget, estimate, measured, pick, seconds_left, timed_on
from maelab.ablate.results import read_status, write_status
from maelab.ablate.runner import plan_runs
from maelab.cli import main
from maelab.engine import signals
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.pretrain import pretrain
from maelab.engine.signals import RunInterrupted
from tests.ablate.conftest import write_suite
from tests.conftest import TINY


@dataclass
class Run:
    variant: str
    run_dir: Path


def finished(tmp_path, variant, seed, seconds, where, status="done"):
    run = Run(variant, tmp_path / variant / f"seed{seed}")
    run.run_dir.mkdir(parents=True)
    write_status(run.run_dir, {"status": status, "seconds": seconds, "timed_on": where})
    return run


def fresh(tmp_path, variant, seed):
    run = Run(variant, tmp_path / variant / f"seed{seed}")
    run.run_dir.mkdir(parents=True)
    return run


WHERE = {"machine": "a GPU", "workers": 1}


def test_runs_are_estimated_from_their_variants_runs_measured_here_less_what_they_spent(tmp_path):
    done = [finished(tmp_path, "base", 0, 10.0, WHERE), finished(tmp_path, "base", 1, 20.0, WHERE),
            finished(tmp_path, "gan", 0, 100.0, WHERE), finished(tmp_path, "gan", 1, 999.0, {**WHERE, "workers": 2})]
    lengths = measured(done, WHERE)
    assert lengths == {"base": [10.0, 20.0], "gan": [100.0]}  # a run timed with 2 workers sharing is not counted
    assert estimate(fresh(tmp_path, "base", 2), lengths) == 15.0
    assert estimate(fresh(tmp_path, "other", 0), lengths) == pytest.approx(130 / 3)  # no run of its own: all runs
    split = finished(tmp_path, "gan", 2, 60.0, WHERE, status="")  # 60 s spent in an earlier window
    assert estimate(split, lengths) == 40.0
    assert estimate(fresh(tmp_path, "base", 3), {}) is None  # nothing measured here: a calibration


def test_the_time_left_counts_every_remaining_run_shared_by_the_workers_and_is_unknown_before_any_is_timed(
        tmp_path):
    lengths = measured([finished(tmp_path, "base", 0, 50.0, WHERE)], WHERE)
    last, other = fresh(tmp_path, "base", 1), fresh(tmp_path, "gan", 0)
    assert seconds_left([last], lengths) == 50.0  # the run starting now counts: not 0 s
    assert seconds_left([last, other], lengths) == 100.0
    assert seconds_left([last, other], lengths, workers=2) == 50.0
    assert seconds_left([last], lengths, workers=4) == 50.0  # never less than the one run left
    assert seconds_left([last], {}) is None  # nothing measured here yet: no figure at all


def test_the_longest_run_that_fits_starts_first_and_none_once_the_budget_is_spent(tmp_path):
    lengths = {"base": [10.0], "gan": [50.0], "huge": [500.0]}
    base, gan, huge = fresh(tmp_path, "base", 0), fresh(tmp_path, "gan", 0), fresh(tmp_path, "huge", 0)
    assert pick([base, gan], Budget(100, time.time() + 100), lengths) is gan
    assert pick([base, gan], Budget(100, time.time() + 30), lengths) is base  # the GAN no longer fits
    assert pick([base, gan], Budget(100, time.time() + 5), lengths) is None
    assert pick([base, gan], Budget(100, time.time() - 1), lengths) is None
    # longer than any window: split across windows, started only while half the window is left
    assert pick([base, huge], Budget(100, time.time() + 90), lengths) is huge
    assert pick([base, huge], Budget(100, time.time() + 40), lengths) is base
    # a run never measured here starts first: it calibrates the others
    assert pick([gan, fresh(tmp_path, "new", 0)], Budget(100, time.time() + 90), lengths).variant == "new"


def test_a_deadline_stops_pretraining_at_a_step_boundary_with_its_checkpoint(tmp_path):
    from maelab.config import load_config

    cfg = load_config(None, [*TINY, "optim.epochs=2", f"out_dir={tmp_path / 'run'}"])
    previous = signals.set_deadline(time.time())  # already past: the first step is the last
    try:
        with pytest.raises(RunInterrupted) as stopped:
            pretrain(cfg)
    finally:
        signals.set_deadline(previous)
    assert stopped.value.at_deadline and stopped.value.step == 1 and "time budget" in str(stopped.value)
    assert load_checkpoint(checkpoint_path(tmp_path / "run"))["step"] == 1


def results(out):
    with (out / "results.csv").open() as f:  # everything but the seconds each pretraining took
        return [{k: v for k, v in r.items()} for r in csv.DictReader(f) if r["metric"] != "pretrain_seconds"]


def test_a_run_at_the_deadline_stops_and_the_suite_finished_later_equals_a_straight_one(finished_suite, tmp_path,
                                                                                       monkeypatch):
    path, straight = finished_suite
    suite, out = load_suite(path), tmp_path / "out"
    real = signals.set_deadline
    monkeypatch.setattr(runner_module, "set_deadline", lambda at: real(time.time() if at else at))  # due at once
    said = []
    run_suite(suite, out, "maelab ablate suite.yaml --time-budget 600", log=said.append,
              budget=Budget.starting_now(600))
    plans = plan_runs(suite, out)
    stopped = [p for p in plans if checkpoint_path(p.run_dir).is_file()]
    assert len(stopped) == 1 and read_status(stopped[0].run_dir).get("status") != "done"
    status = read_status(stopped[0].run_dir)
    assert status["seconds"] > 0 and status["timed_on"] == timed_on(1)  # what the next window's estimate reads
    assert not list(out.glob("runs/*/*/.claim"))  # its claim released
    assert any("stopped at the time budget" in line for line in said)
    assert "4 runs of 4 left" in said[-1]  # it was the first; no other started after the deadline
    monkeypatch.setattr(runner_module, "set_deadline", real)
    run_suite(suite, out, "maelab ablate suite.yaml", log=lambda _: None)  # the next window, unbounded
    assert all(read_status(p.run_dir)["status"] == "done" for p in plans)
    assert results(out) == results(straight)  # bit-exact resume: nothing lost to the split


def test_a_time_budget_that_is_no_number_of_seconds_is_refused_before_anything_is_written(tmp_path, capsys):
    path = write_suite(tmp_path / "suite")
    for budget in ("0", "-5"):
        assert main(["ablate", str(path), "--out", str(tmp_path / "out"), "--time-budget", budget]) == 2
        err = capsys.readouterr().err
        assert f"--time-budget {budget}" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_workers_carry_the_budgets_deadline(tmp_path):
    from maelab.ablate.workers import worker_command, worker_environment

    budget = Budget(300.0, 1.7e9)
    cmd = worker_command(tmp_path / "s.yaml", tmp_path / "o", 3, 4, 2, budget)
    assert cmd[cmd.index("--time-budget") + 1] == "300.0" and float(cmd[cmd.index("--deadline") + 1]) == 1.7e9
    assert int(worker_environment(2)["TORCHINDUCTOR_COMPILE_THREADS"]) >= 1
    assert json.dumps(cmd)  # plain strings
