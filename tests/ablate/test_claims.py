"""Claims from other hosts and the heartbeat: a claim left by a machine that is gone never blocks a run forever."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from maelab.ablate import claims
from maelab.ablate.claims import CLAIM_NAME, Holder, claimed, holder, is_stale, try_claim


@pytest.fixture(autouse=True)
def _no_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)


def _claim(run: Path, text: str, age_s: float) -> Path:
    """A claim file holding ``text`` whose last heartbeat was ``age_s`` seconds ago."""
    run.mkdir(parents=True, exist_ok=True)
    path = run / CLAIM_NAME
    path.write_text(text)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def _heartbeats() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("maelab-claim-heartbeat")]


def test_a_claim_from_another_host_refreshed_within_the_stale_time_is_respected(tmp_path, capsys):
    run = tmp_path / "run"
    _claim(run, "4321 other-host", claims.STALE_AFTER_S - 60)
    assert is_stale(holder(run)) is None and not try_claim(run)
    assert holder(run) == Holder(4321, "other-host") and capsys.readouterr().err == ""


@pytest.mark.parametrize("text", ["4321 other-host", "4321 other-host 77 0"])  # a worker's claim, a SLURM job's
def test_a_claim_from_another_host_older_than_the_stale_time_is_taken_over_with_one_warning(tmp_path, capsys, text):
    run = tmp_path / "run"
    _claim(run, text, claims.STALE_AFTER_S + 5)  # also a claim of an older maelab: no heartbeat, an old file
    assert is_stale(holder(run)) is True and try_claim(run)
    assert holder(run) == Holder(os.getpid(), socket.gethostname())
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "warning" in lines[0] and "process 4321 on other-host" in lines[0]
    assert "no heartbeat for 10.1 min" in lines[0] and "taking it over" in lines[0]


def test_a_live_local_claim_is_respected_however_old_its_file(tmp_path):
    run = tmp_path / "run"
    _claim(run, f"{os.getppid()} {socket.gethostname()}", 10 * claims.STALE_AFTER_S)  # liveness decides here
    assert is_stale(holder(run)) is False and not try_claim(run)


def test_the_heartbeat_refreshes_a_held_claim_and_stops_when_it_is_released(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.05)
    run = tmp_path / "run"
    with claimed(run) as mine:
        assert mine and [t.daemon for t in _heartbeats()] == [True]
        path = run / CLAIM_NAME
        old = time.time() - 3600
        os.utime(path, (old, old))
        deadline = time.monotonic() + 2
        while path.stat().st_mtime < old + 3000:
            assert time.monotonic() < deadline, "the heartbeat did not refresh the claim within 2 s"
            time.sleep(0.01)
        assert time.time() - path.stat().st_mtime < 5
    assert _heartbeats() == [] and not path.exists()


def test_a_claim_that_vanishes_or_is_taken_over_while_held_is_left_alone(tmp_path, monkeypatch, capsys):
    errors = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    run = tmp_path / "run"
    with claimed(run, heartbeat_s=0.02):
        (run / CLAIM_NAME).unlink()  # removed by hand: the heartbeat stops without a word
        time.sleep(0.1)
    assert _heartbeats() == [] and errors == [] and capsys.readouterr().err == ""
    with claimed(run, heartbeat_s=0.02):  # this process stalled and another host took its claim over
        (run / CLAIM_NAME).write_text("4321 other-host")
        time.sleep(0.1)
    assert holder(run) == Holder(4321, "other-host")  # the new holder's claim is not removed
    assert _heartbeats() == [] and errors == []
    assert "taken over by process 4321 on other-host" in capsys.readouterr().err


def test_the_launcher_clears_a_quiet_claim_without_asking_slurm(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from maelab.ablate import launcher

    def no_sacct(job, options):
        raise AssertionError("SLURM was asked about a claim that its heartbeat already judged")

    monkeypatch.setattr(launcher, "_slurm_state", no_sacct)
    plan = SimpleNamespace(run_dir=tmp_path / "run", label="baseline seed 0")
    _claim(plan.run_dir, "1 other-host 55 0", claims.STALE_AFTER_S + 5)
    lines = []
    assert launcher._held(plan, launcher.ClusterOptions(), lines.append) is False
    assert not (plan.run_dir / CLAIM_NAME).exists()
    assert len(lines) == 1 and "process 1 on other-host, SLURM job 55" in lines[0] and "cleared" in lines[0]
