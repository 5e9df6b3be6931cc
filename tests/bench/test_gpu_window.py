"""bench/gpu_window.sh --dry-run: two simulated GPU windows, each on a fresh "machine" with a time budget, their
archives merged here between them, end in the report one uninterrupted run of the suite gives."""

import csv
import os
import shutil
import subprocess
import sys

from maelab.ablate import build_report, load_suite
from maelab.ablate.results import read_status
from maelab.ablate.runner import pending_runs, plan_runs
from maelab.cli import main
from tests.conftest import REPO


def window(tmp_path, name, *args):
    """One window call on a fresh machine: its own $OUT and suite folder."""
    out, device = tmp_path / name / "out", tmp_path / name / "device"
    env = {**os.environ, "OUT": str(out), "SUITE_DIR": str(device), "PYTHON": sys.executable,
           "STAGE_DIR": str(tmp_path / name / "data")}
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu_window.sh"), "--dry-run", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=900)
    log = (out / "window.log").read_text() if (out / "window.log").is_file() else ""
    assert done.returncode == 0, done.stdout + done.stderr + log
    return out


def results(out):
    with (out / "results.csv").open() as f:  # all but the seconds each pretraining took
        return [(r["variant"], r["seed"], r["metric"], r["value"], r["status"]) for r in csv.DictReader(f)
                if r["metric"] != "pretrain_seconds"]


def verdicts(report):
    """The report up to its timing table: the answer, the results and every difference."""
    return report.read_text().split("The mask ratio the encoder actually saw")[0]


def a_third_of_the_runs(straight) -> int:
    """A first window's budget that holds about a third of the suite on this machine, however fast it is: a third
    of the seconds the straight run's runs took here (a fixed 12 s held all four on a faster machine). Its first
    run starts whatever the budget (the calibration), and ends or stops with its checkpoint."""
    seconds = [float(read_status(run)["seconds"]) for run in (straight / "runs").glob("*/seed*")]
    assert seconds, "the straight run has no timed runs"
    return max(3, round(sum(seconds) / 3))


def test_two_windows_with_a_merge_between_them_end_in_the_report_of_one_straight_run(finished_suite, tmp_path):
    path, straight = finished_suite
    straight = shutil.copytree(straight, tmp_path / "straight")  # its report is written below
    suite, local = load_suite(path), tmp_path / "local"
    first = window(tmp_path, "w1", "--suite", path, "--budget", a_third_of_the_runs(straight), "--margin", 0)
    assert main(["ablate", "--merge", str(first / "suite.tgz"), "--out", str(local)]) == 0
    left = pending_runs(suite, local)
    assert 0 < left, "the first window's budget cannot hold the whole suite"
    split = [p.label for p in plan_runs(suite, local)
             if (p.run_dir / "checkpoints" / "last.pt").is_file() and read_status(p.run_dir).get("status") != "done"]
    assert split or left < len(plan_runs(suite, local)), "the first window neither finished nor stopped a run"
    assert main(["ablate", "--out", str(local), "--archive", str(tmp_path / "carry.tgz")]) == 0  # pack, run nothing
    assert pending_runs(suite, local) == left
    second = window(tmp_path, "w2", "--suite", path, "--carry", tmp_path / "carry.tgz", "--budget", 900)
    assert "merge" in (second / "window.log").read_text()
    assert main(["ablate", "--merge", str(second / "suite.tgz"), "--out", str(local)]) == 0
    assert pending_runs(suite, local) == 0
    assert results(local) == results(straight), f"split across windows: {split}"
    assert verdicts(build_report(local, figures=False)) == verdicts(build_report(straight, figures=False))
