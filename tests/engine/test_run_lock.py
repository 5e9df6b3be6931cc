"""The run directory's lock with real processes: a run that another process trains is refused (resume, overwrite)
in one line naming that process, and accepted again once that process is gone (its lock dies with it)."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from maelab.cli import main
from maelab.engine.checkpoint import load_checkpoint, save_checkpoint
from maelab.engine.run_lock import LOCK_NAME, RunBusy, acquire, release, run_lock
from tests.conftest import REPO, TINY

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
# `maelab pretrain --resume RUN` in a process that imports maelab while the test creates RUN (the two overlap),
# then waits for RUN's first checkpoint before it starts
RESUME_WHEN_READY = """
import pathlib, sys, time
from maelab.cli import main
import maelab.engine.pretrain, maelab.eval.monitors
while not (pathlib.Path(sys.argv[1]) / "done").exists():
    time.sleep(0.01)
sys.exit(main(["pretrain", "--resume", sys.argv[1]]))
"""
HOLD = ("import sys, time; from maelab.engine.run_lock import acquire; acquire(sys.argv[1]); "
        "print('held', flush=True); time.sleep(600)")


def error_lines(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("maelab: error:")]


def wait_for(ready, proc, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{what}: the process ended or took too long ({proc.communicate()[1][-2000:]})")
        time.sleep(0.02)


def stop(proc):
    proc.send_signal(signal.SIGKILL)  # no clean exit: the kernel releases the lock
    proc.wait(timeout=30)


def test_a_run_another_process_trains_is_refused_until_that_process_is_killed(tmp_path, capsys):
    out = tmp_path / "run"
    args = [*TINY, "optim.epochs=100000", "train.threads=1", "train.tensorboard=false", f"out_dir={out}"]
    trainer = subprocess.Popen([sys.executable, "-c", RESUME_WHEN_READY, str(out)],  # trains on for a long time
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert main(["pretrain", *args, "train.stop_after_epochs=1"]) == 0
        (out / "done").touch()
        lock = out / LOCK_NAME
        wait_for(lambda: lock.is_file() and lock.read_text().split()[:1] == [str(trainer.pid)], trainer,
                 "the training process's lock")
        held = f"{out} is being trained by process {trainer.pid} on host {socket.gethostname()} (it holds " \
               f"{lock}): wait for it to end, or stop it"
        assert main(["pretrain", "--resume", str(out)]) == 2
        assert [line.split(": ", 2)[2][:len(held)] for line in error_lines(capsys)] == [held]
        config = (out / "config.yaml").read_text()
        assert main(["pretrain", *args, "overwrite=true"]) == 2
        assert [line.split(": ", 2)[2][:len(held)] for line in error_lines(capsys)] == [held]
        assert (out / "config.yaml").read_text() == config and (out / "checkpoints" / "last.pt").is_file()
    finally:
        stop(trainer)
    epoch = load_checkpoint(out / "checkpoints" / "last.pt")["epoch"]
    assert main(["pretrain", "--resume", str(out), f"train.stop_after_epochs={epoch + 1}"]) == 0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == (epoch + 1) * 4
    assert not lock.exists()  # released and removed at the end of training


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunBusy, match=f"is being trained by process {holder.pid} on host "):
            acquire(run_dir)
        with pytest.raises(RunBusy):  # the refusal is not swallowed by the context manager
            with run_lock(run_dir):
                pass
    finally:
        stop(holder)
    assert (run_dir / LOCK_NAME).read_text().split()[0] == str(holder.pid)  # a stale note: no longer a lock
    with run_lock(run_dir):
        with run_lock(run_dir):  # re-entrant in one process
            assert (run_dir / LOCK_NAME).read_text().split()[0] == str(os.getpid())
        assert (run_dir / LOCK_NAME).exists()
    assert not (run_dir / LOCK_NAME).exists()
    release(run_dir)  # not held: nothing to do


def test_a_folder_the_lock_created_is_removed_when_nothing_was_written_into_it(tmp_path):
    with run_lock(tmp_path / "new"):
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()  # a run that failed before writing anything leaves no folder


def test_a_resume_whose_checkpoint_moved_on_before_it_took_the_lock_is_refused(tmp_path):
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    save_checkpoint({"step": 8, "w": torch.zeros(1)}, last)  # another process trained on after step 4 was read
    with pytest.raises(RunBusy, match=r"checkpoint changed while this resume started \(it read step 4, last\.pt now "
                                      r"holds step 8\)"):
        with run_lock(tmp_path / "run", step=4):
            pass
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # refused: the lock is given back
    with run_lock(tmp_path / "run", step=8):
        pass
