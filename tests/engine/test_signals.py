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

LONG = [*TINY, "data.synthetic_train=1000", "optim.batch_size=50", "optim.epochs=6", "train.log_every=1",
        "train.tensorboard=false", "train.threads=1"]


def step_lines(run_dir):
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if '"kind": "step"' in line)  # epoch lines not counted


# SIGINT takes the same handler as SIGTERM (engine/signals.py): its copy is slow-marked for the 10-minute suite
@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_stop_signal_saves_at_a_step_boundary_and_resume_is_bit_exact(tmp_path, signum):
    out = tmp_path / "stopped"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "maelab", "pretrain", *LONG, f"out_dir={out}"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300  # a loaded machine can run this tiny config at ~10 img/s
    while step_lines(out) < 25 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"--resume {out}" in err and signal.Signals(signum).name in err
    stopped_at = load_checkpoint(checkpoint_path(out))["step"]
    assert 25 <= stopped_at < 6 * 20  # stopped early, somewhere after the 25th step
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records) == stopped_at  # nothing logged past the checkpoint

    resume(out, [])
    straight = pretrain(load_config(None, [*LONG, f"out_dir={tmp_path / 'straight'}"]))
    a, b = load_checkpoint(checkpoint_path(out))["model"], load_checkpoint(checkpoint_path(straight))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
