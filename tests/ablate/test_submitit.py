"""`maelab ablate --launcher submitit-local`: the cluster launcher's jobs, run by submitit's LocalExecutor."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time

import pytest

from maelab.ablate.claims import holder
from maelab.ablate.cluster_job import RunJob
from maelab.ablate.launcher import maelab_importable
from maelab.ablate.results import eval_rows, read_results, read_status, run_dir_of, training_rows
from maelab.ablate.seed_plan import PLAN_NAME
from maelab.cli import main
from maelab.engine.checkpoint import checkpoint_path
from tests.ablate.conftest import write_suite

submitit = pytest.importorskip("submitit")

TIMING = {"pretrain_seconds"}  # the only metric that depends on the machine's load


def launch(path, out, *more):
    return main(["ablate", str(path), "--out", str(out), "--launcher", "submitit-local", *more])


def submitted(out) -> int:
    return len(list((out / "submitit").glob("*_submitted.pkl")))


def values(out) -> dict:
    return {(r.variant, r.seed, r.metric): r.value for r in read_results(out / "results.csv") if r.metric not in TIMING}


@pytest.fixture(scope="module")
def launched(finished_suite, tmp_path_factory):
    """The conftest's tiny suite (2 variants × 2 seeds) run as jobs: (suite file, ablation folder)."""
    path, _ = finished_suite
    out = tmp_path_factory.mktemp("launched") / "out"
    assert launch(path, out) == 0
    return path, out


def test_a_suite_run_as_jobs_matches_the_same_suite_run_in_one_process(launched, finished_suite):
    _, out = launched
    _, reference = finished_suite
    assert submitted(out) == 4  # one job per run: the launcher did not silently run nothing
    rows = read_results(out / "results.csv")
    assert {(r.variant, r.seed) for r in rows if r.metric == "probe_top1"} == {
        (v, s) for v in ("baseline", "linear", "random_init") for s in (0, 1)}
    assert all(r.status == "done" for r in rows)
    assert values(out) == values(reference)  # same metrics for the same seeds
    assert (out / "report.md").is_file()


def test_rerunning_the_command_submits_nothing_that_is_done(launched, capsys):
    path, out = launched
    before = (out / "results.csv").read_text()
    assert launch(path, out) == 0
    assert "4 already finished, 0 to submit" in capsys.readouterr().out
    assert submitted(out) == 4 and (out / "results.csv").read_text() == before


@pytest.mark.slow  # ~14 s of jobs; a job that dies is recorded as failed in the default suite (below)
def test_a_run_that_fails_in_its_job_is_recorded_and_the_other_runs_finish(tmp_path, capsys):
    broken = {"overrides": ["data.name=folder", f"data.root={tmp_path / 'no_such_images'}"]}
    path = write_suite(tmp_path / "suite", seeds=1, variants={"baseline": {}, "broken": broken}, claims=[])
    out = tmp_path / "out"
    assert launch(path, out) == 0
    assert "1 failed; rerun" in capsys.readouterr().err
    status = read_status(run_dir_of(out, "broken", 0))
    assert status["status"] == "failed" and "no_such_images" in status["traceback"]
    rows = read_results(out / "results.csv")
    failed = [r for r in rows if r.status == "failed"]
    assert [(r.variant, r.seed) for r in failed] == [("broken", 0)] and "Error" in failed[0].error
    assert any(r.variant == "baseline" and r.metric == "probe_top1" and r.status == "done" for r in rows)
    assert launch(path, out) == 0  # a failed run is tried again, like a local worker's; the finished one is not
    assert "1 to submit" in capsys.readouterr().out and submitted(out) == 3


@pytest.mark.slow  # ~30 s of jobs; the two-stage plan itself is tested in test_seed_plan.py and the local path
def test_seeds_auto_waits_for_the_pilots_jobs_then_submits_the_planned_seeds(suite_copy, monkeypatch, capsys):
    from maelab.ablate import seed_plan

    path, out = suite_copy  # seeds 0 and 1 already finished: the pilot's jobs run seed 2
    real = seed_plan.plan_seeds

    def four_seeds(suite, folder, rows, max_seeds):
        assert {r.seed for r in rows if r.variant == "linear"} == {0, 1, 2}  # the pilot's jobs had ended
        plan = {**real(suite, folder, rows, max_seeds), "seeds": 4}
        (folder / PLAN_NAME).write_text(json.dumps(plan))
        return plan

    monkeypatch.setattr(seed_plan, "plan_seeds", four_seeds)
    assert launch(path, out, "--seeds", "auto", "--max-seeds", "4", "--max-jobs", "2") == 0
    printed = capsys.readouterr().out
    assert "seed plan (seed_plan.json): 4 seeds" in printed and printed.count("to submit") == 2
    rows = read_results(out / "results.csv")
    assert {r.seed for r in rows if r.variant == "linear"} == {0, 1, 2, 3} and all(r.status == "done" for r in rows)
    assert submitted(out) == 4  # seed 2 (pilot) and seed 3 (planned), two variants each


def test_the_job_checkpoints_as_itself_so_a_requeued_job_resumes_its_run(tmp_path):
    job = RunJob(str(tmp_path / "suite.yaml"), 2, str(tmp_path / "out"), "baseline", 1, threads=1)
    delayed = job.checkpoint()
    assert delayed.function == job and delayed.function is not job and delayed.args == ()


def test_without_submitit_the_launcher_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    path = write_suite(tmp_path / "suite", seeds=1)
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    assert main(["ablate", str(path), "--out", str(tmp_path / "out"), "--launcher", "submitit"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'maelab[cluster]'" in err and "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "words"), [
    (["--partition", "gpu"], "--partition applies with --launcher submitit only"),
    (["--launcher", "submitit-local", "--workers", "2"], "--workers is for one machine"),
    (["--launcher", "submitit-local", "--timeout-min", "0"], "--timeout-min 0 is not valid"),
    (["--launcher", "submitit-local", "--max-jobs", "-1"], "--max-jobs -1 is not valid"),
])
def test_launcher_options_that_do_not_fit_are_one_clear_error_and_nothing_is_written(tmp_path, capsys, args, words):
    path = write_suite(tmp_path / "suite", seeds=1)
    assert main(["ablate", str(path), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_submitit_without_slurm_points_to_the_local_executor(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    path = write_suite(tmp_path / "suite", seeds=1)
    assert main(["ablate", str(path), "--out", str(tmp_path / "out"), "--launcher", "submitit"]) == 2
    assert "--launcher submitit-local" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_preempted_job_checkpoints_is_requeued_and_resumes_its_run_to_the_same_result(finished_suite, tmp_path):
    path, reference = finished_suite
    out = tmp_path / "out"
    run_dir = run_dir_of(out, "baseline", 0)
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=60)
    with maelab_importable():
        job = executor.submit(RunJob(str(path), 2, str(out), "baseline", 0))
    deadline = time.time() + 300
    while holder(run_dir) is None or not checkpoint_path(run_dir).is_file():  # pretraining has begun
        assert time.time() < deadline and not job.done(), job.stderr()
        time.sleep(0.05)
    os.kill(holder(run_dir).pid, signal.SIGUSR2)  # what SLURM sends before preempting or at the time limit
    assert job.result() == "done"
    log = job.stdout()  # checkpointed, requeued, and run again (resumed) in a fresh process
    assert "Requeued job" in log and log.count("baseline seed 0: pretrain") == 2
    seen = read_results_of(reference, "baseline", 0)
    here = {r.metric: r.value for r in training_rows("baseline", 0, run_dir) + eval_rows("baseline", 0, run_dir)}
    assert {k: v for k, v in here.items() if k not in TIMING} == seen


def read_results_of(out, variant, seed) -> dict:
    return {m: v for (var, s, m), v in values(out).items() if (var, s) == (variant, seed)}


class DeadJob:
    """A job that ended without a word from its run (killed, out of memory): submitit's result() raises."""

    job_id = "77"
    paths = type("Paths", (), {"stderr": "jobs/77_0_log.err"})()

    def result(self):
        raise submitit.core.utils.FailedJobError("Job (task=0) failed during processing with trace:\n...\nKilled")


def test_a_job_that_dies_without_a_word_has_its_run_recorded_as_failed_but_a_finished_run_is_kept(tmp_path):
    from maelab.ablate import launcher
    from maelab.ablate.results import write_status

    lines = []
    assert launcher._settle(DeadJob(), RunJob("s.yaml", 1, str(tmp_path), "baseline", 0), "1 of 2", lines.append) \
        == "failed"
    status = read_status(run_dir_of(tmp_path, "baseline", 0))
    assert status["status"] == "failed" and status["error"] == "job 77 failed: Killed"
    assert "jobs/77_0_log.err" in status["traceback"] and "baseline seed 0: failed (job 77; 1 of 2" in lines[0]
    write_status(run_dir_of(tmp_path, "linear", 0), {"status": "done"})
    launcher._settle(DeadJob(), RunJob("s.yaml", 1, str(tmp_path), "linear", 0), "2 of 2", lines.append)
    assert read_status(run_dir_of(tmp_path, "linear", 0)) == {"status": "done"}


def test_a_refused_submission_is_one_clear_error_naming_the_jobs_already_running(tmp_path):
    from maelab.ablate import launcher
    from maelab.errors import UserError

    class Refusing:
        def submit(self, job):
            raise RuntimeError("sbatch: error: invalid partition specified: nope")

    with pytest.raises(UserError, match="invalid partition specified: nope.*check --partition"):
        launcher._submit(Refusing(), RunJob("s.yaml", 1, str(tmp_path), "baseline", 0), [])


def test_the_launcher_clears_an_ended_slurm_jobs_claim_and_does_not_resubmit_a_running_ones_run(tmp_path,
                                                                                                monkeypatch):
    from types import SimpleNamespace

    from maelab.ablate import launcher
    from maelab.ablate.claims import CLAIM_NAME

    plan = SimpleNamespace(run_dir=tmp_path / "run", label="baseline seed 0")
    plan.run_dir.mkdir()
    lines = []
    for state, held in (("COMPLETED", False), ("RUNNING", True), ("UNKNOWN", True)):
        (plan.run_dir / CLAIM_NAME).write_text("1 other-host 55 0")  # a job's claim, written on a compute node
        monkeypatch.setattr(launcher, "_slurm_state", lambda job, options, state=state: state)
        assert launcher._held(plan, launcher.ClusterOptions(), lines.append) is held
        assert (plan.run_dir / CLAIM_NAME).exists() is held
    assert "baseline seed 0: held by SLURM job 55, not submitted" in lines[0]


def test_the_slurm_jobs_sbatch_file_carries_the_options_and_the_timeout_signal(tmp_path, monkeypatch):
    from maelab.ablate import launcher

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun is here"
    options = launcher.ClusterOptions(partition="gpu", timeout_min=90, gpus_per_node=1, cpus_per_task=8, mem_gb=32)
    executor = launcher.make_executor(options, tmp_path / "jobs", "maelab-tiny")
    sbatch = executor._executor._make_submission_file_text("python -u -m submitit.core._submit jobs", "uid")
    for line in ("--partition=gpu", "--time=90", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB",
                 "--job-name=maelab-tiny", "--nodes=1", "--ntasks-per-node=1", "--signal=USR2@90"):
        assert f"#SBATCH {line}\n" in sbatch
