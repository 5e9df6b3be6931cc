"""SIGKILL at chosen moments of a real `maelab pretrain` process: the last complete checkpoint always loads, and
resuming reaches the same final weights, bit for bit, as a run that was never interrupted (CPU)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from maelab.config import load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.pretrain import pretrain, resume
from tests.conftest import REPO, TINY

SPE, EPOCHS = 10, 3  # 320 images, batch 32: 10 steps per epoch, a checkpoint every 10 steps
ARGS = [*TINY, "data.synthetic_train=320", "optim.batch_size=32", f"optim.epochs={EPOCHS}", "train.log_every=1",
        "train.threads=1",
        "train.tensorboard=false"]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
# `maelab` in a process whose N-th checkpoint write stops itself (SIGSTOP) between its complete temporary file
# and the rename over last.pt, so that the test can SIGKILL it exactly there (injected here: no hook in maelab).
# The write runs on a background thread: the signal goes to that thread (pthread_kill), which then stops before its
# next instruction; sent to the process, the main thread would take it and the writer could rename in the meantime
HELD_AT_SAVE = """
import itertools, os, signal, sys, threading
from maelab.cli import main
saves, real_replace = itertools.count(1), os.replace
def replace(src, dst):
    if str(dst).endswith("last.pt") and next(saves) == {n}:
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
    real_replace(src, dst)
os.replace = replace
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The final weights of the same run, never interrupted."""
    run_dir = pretrain(load_config(None, [*ARGS, f"out_dir={tmp_path_factory.mktemp('kill') / 'straight'}"]))
    return load_checkpoint(checkpoint_path(run_dir))["model"]


def start(out, hold_at_save=None):
    """A real `maelab pretrain` process; with ``hold_at_save=N`` it stops itself in its N-th checkpoint write."""
    launch = ["-m", "maelab"] if hold_at_save is None else ["-c", HELD_AT_SAVE.format(n=hold_at_save)]
    return subprocess.Popen([sys.executable, *launch, "pretrain", *ARGS, f"out_dir={out}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)


def kill_when(proc, ready, what):
    """SIGKILL ``proc`` as soon as ``ready()`` holds (polled every 5 ms)."""
    deadline = time.time() + 120
    while not ready():
        if proc.poll() is not None or time.time() > deadline:
            fail(proc, what)
        time.sleep(0.005)
    kill(proc)


def kill_when_held(proc, what):
    """SIGKILL ``proc`` once the checkpoint hook has stopped it (SIGSTOP) between its temp file and the rename."""
    deadline = time.time() + 120
    while time.time() < deadline:
        pid, status = os.waitpid(proc.pid, os.WNOHANG | os.WUNTRACED)
        if pid and os.WIFSTOPPED(status):
            return kill(proc)
        if pid:  # it ended instead
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.005)
    fail(proc, what)


def fail(proc, what):
    proc.kill()
    pytest.fail(f"the run ended or hung before {what}: {proc.communicate()[1][-2000:]}")


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def logged_steps(out):
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def temp_files(out):
    return sorted((out / "checkpoints").glob("last.pt.*.tmp"))


def assert_resumes_bit_exact(out, straight):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, SPE * EPOCHS + 1))  # none twice
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == list(range(EPOCHS))
    final = load_checkpoint(checkpoint_path(out))
    assert final["step"] == SPE * EPOCHS
    assert all(torch.equal(final["model"][k], straight[k]) for k in straight)
    assert temp_files(out) == []  # what the killed writer left is gone after the next save


def test_sigkill_during_a_checkpoint_write_keeps_the_last_one_and_resume_is_bit_exact(tmp_path, straight):
    out = tmp_path / "run"
    # the 2nd save (end of epoch 2) is parked between its complete temporary file and the rename
    proc = start(out, hold_at_save=2)
    kill_when_held(proc, "the second checkpoint write")
    assert load_checkpoint(checkpoint_path(out))["step"] == SPE  # last.pt is the epoch-1 checkpoint, whole
    assert len(temp_files(out)) == 1  # the new one never replaced it
    resumed = subprocess.run([sys.executable, "-m", "maelab", "pretrain", "--resume", str(out)], env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert_resumes_bit_exact(out, straight)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["mid_epoch", "right_after_a_checkpoint"])
def test_sigkill_between_checkpoints_resumes_bit_exact(tmp_path, straight, moment):
    out = tmp_path / "run"
    proc = start(out)
    if moment == "mid_epoch":  # half-way through epoch 2: 5 steps past the epoch-1 checkpoint
        kill_when(proc, lambda: logged_steps(out) >= SPE + 1 + SPE // 2, "the middle of epoch 2")
    else:
        kill_when(proc, checkpoint_path(out).exists, "the first checkpoint")
    saved = load_checkpoint(checkpoint_path(out))
    assert saved["step"] == SPE
    resume(out, [])
    assert_resumes_bit_exact(out, straight)
