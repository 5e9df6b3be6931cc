import os
import signal
import socket
import subprocess
import sys
import time

import yaml

from maelab.ablate.claims import CLAIM_NAME, Holder, claimed, holder, is_stale, try_claim
from maelab.ablate.environment import read_invocations
from maelab.ablate.results import read_results, read_status
from maelab.ablate.seed_plan import PLAN_NAME
from maelab.ablate.workers import maelab_pythonpath
from maelab.cli import main
from tests.ablate.conftest import BASE, write_suite


def test_a_live_claim_is_respected_and_a_dead_ones_is_taken_over(tmp_path):
    run = tmp_path / "run"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        run.mkdir()
        (run / CLAIM_NAME).write_text(str(sleeper.pid))
        assert not try_claim(run)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert try_claim(run) and holder(run) == Holder(os.getpid(), socket.gethostname())
    (run / CLAIM_NAME).unlink()
    with claimed(run) as mine:
        assert mine and (run / CLAIM_NAME).exists()
    assert not (run / CLAIM_NAME).exists()


def test_a_claim_from_another_host_is_respected_unless_it_is_this_slurm_jobs_earlier_incarnation(tmp_path,
                                                                                                 monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / CLAIM_NAME).write_text("1 other-host 4242 0")  # pid 1 lives here, but that says nothing of other-host
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert is_stale(holder(run)) is None and not try_claim(run)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # another task of the same start of job 4242: it is respected
    assert not try_claim(run)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # requeued, job 4242 finds its killed first start's claim
    assert try_claim(run) and holder(run) == Holder(os.getpid(), socket.gethostname(), "4242", 1)


def test_two_workers_share_a_suite_and_run_each_run_once(tmp_path, capsys):
    path = write_suite(tmp_path / "suite", seeds=1)
    out = tmp_path / "out"
    assert main(["ablate", str(path), "--out", str(out), "--workers", "2", "--threads", "1"]) == 0
    rows = read_results(out / "results.csv")
    assert {(r.variant, r.seed) for r in rows if r.metric == "probe_top1"} == {
        ("baseline", 0), ("linear", 0), ("random_init", 0)}
    assert all(r.status == "done" for r in rows)
    for variant in ("baseline", "linear"):  # pretrained once: one epoch record per epoch
        metrics = (out / "runs" / variant / "seed0" / "metrics.jsonl").read_text()
        assert metrics.count('"kind": "epoch"') == 2
        assert not (out / "runs" / variant / "seed0" / CLAIM_NAME).exists()
    assert (out / "report.md").is_file()
    assert len(read_invocations(out)) == 1  # the parent records the invocation, its workers do not


def test_a_signal_to_the_workers_stops_the_pilot_and_no_seed_plan_is_made_from_it(tmp_path):
    path = write_suite(tmp_path / "suite")
    long_base = {**BASE, "optim": {**BASE["optim"], "epochs": 500}}  # runs that cannot finish before the signal
    (path.parent / "base.yaml").write_text(yaml.safe_dump(long_base))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": maelab_pythonpath()}
    proc = subprocess.Popen([sys.executable, "-m", "maelab", "ablate", str(path), "--out", str(out), "--seeds", "auto",
                             "--workers", "2", "--threads", "1"], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any('"kind": "step"' in m.read_text() for m in out.glob("runs/*/seed*/metrics.jsonl")):
        assert time.monotonic() < deadline, "no run logged a step within 2 minutes"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as a session's end or a scheduler stops it
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "rerun" in err
    assert not (out / PLAN_NAME).exists()  # (before the fix, the plan was made from the unfinished pilot)
    done = [d for d in out.glob("runs/*/seed*") if read_status(d).get("status") == "done"]
    assert len(done) < 2 * 3  # runs of the pilot (2 variants x 3 seeds) are left, started or not
