"""Progress where a user waits: a bar on a terminal; in a log (nohup, SLURM) plain lines at a modest cadence, no
carriage-return redraws; ``train.progress=false`` shows nothing."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios

from maelab.progress import PLAIN_EVERY_S, Progress, on_terminal
from tests.conftest import REPO, TINY


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_plain_line_comes_at_most_every_30_seconds_and_once_at_the_end():
    log, clock = io.StringIO(), Clock()
    with Progress(100, "pretrain", stream=log, clock=clock) as bar:
        for step in range(100):
            clock.now = step * 1.0  # one step a second: 100 s in all
            if step == 10:
                bar.set_postfix(loss="0.4321", img_s="1234")
            bar.update()
    lines = log.getvalue().splitlines()
    assert PLAIN_EVERY_S == 30.0 and "\r" not in log.getvalue()
    assert [line.split(",")[0] for line in lines] == ["pretrain: 31/100 steps (31%)", "pretrain: 61/100 steps (61%)",
                                                      "pretrain: 91/100 steps (91%)", "pretrain: 100/100 steps (100%)"]
    assert lines[0] == "pretrain: 31/100 steps (31%), loss=0.4321 img_s=1234; 30 s elapsed, about 1.1 min left"
    assert lines[-1].endswith("; 1.6 min elapsed")  # done: no time left to estimate


def test_a_resumed_phase_counts_from_where_it_was_and_estimates_from_its_own_pace():
    log, clock = io.StringIO(), Clock()
    bar = Progress(1000, "pretrain", initial=900, stream=log, clock=clock)
    clock.now = 40.0
    bar.update(40)
    bar.close()
    assert log.getvalue().splitlines() == ["pretrain: 940/1000 steps (94%); 40 s elapsed, about 1.0 min left"]


def test_on_a_terminal_the_bar_redraws_in_place():
    screen = Terminal()
    with Progress(10, "pretrain", stream=screen) as bar:
        bar.update(10)
    assert on_terminal(screen) and "\r" in screen.getvalue() and "10/10" in screen.getvalue()


def test_disabled_it_shows_nothing_on_a_terminal_or_in_a_log():
    for stream in (Terminal(), io.StringIO()):
        with Progress(10, "pretrain", stream=stream, every=0.0, enabled=False) as bar:
            bar.update(10)
        assert stream.getvalue() == ""


def maelab_pretrain(out, *overrides, stderr):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-m", "maelab", "pretrain", *TINY, "optim.epochs=1", f"out_dir={out}",
                             *overrides], stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def test_pretraining_into_a_log_file_writes_plain_progress_lines_without_redraws(tmp_path):
    log = tmp_path / "nohup.out"
    with log.open("w") as f:
        assert maelab_pretrain(tmp_path / "run", "train.progress=true", stderr=f).wait(timeout=300) == 0
    text = log.read_text()
    assert "\r" not in text
    lines = [line for line in text.splitlines() if line.startswith("pretrain: ")]
    assert len(lines) == 1 and lines[0].startswith("pretrain: 4/4 steps (100%), loss=")  # the line at the end
    assert "img_s=" in lines[0]


def test_pretraining_with_progress_off_writes_no_progress_line(tmp_path):
    log = tmp_path / "nohup.out"
    with log.open("w") as f:
        assert maelab_pretrain(tmp_path / "run", "train.progress=false", stderr=f).wait(timeout=300) == 0
    assert "pretrain: " not in log.read_text()


def test_pretraining_on_a_terminal_draws_the_bar(tmp_path):
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns (a new pty has 0)
    proc = maelab_pretrain(tmp_path / "run", "train.progress=true", stderr=child)
    os.close(child)
    shown = b""
    while True:
        ready, _, _ = select.select([parent], [], [], 300)
        try:
            chunk = os.read(parent, 4096) if ready else b""
        except OSError:  # the terminal closed: the process ended
            chunk = b""
        if not chunk:
            break
        shown += chunk
    os.close(parent)
    assert proc.wait(timeout=60) == 0
    assert b"pretrain: 100%" in shown and b"4/4" in shown and b"\rpretrain:" in shown  # drawn over itself


def test_the_closing_progress_line_shows_the_last_steps_loss_not_the_last_logged_one(tmp_path, monkeypatch, capsys):
    import maelab.engine.pretrain as loop
    from maelab.config import load_config

    losses = []

    def recording(run):
        def step(*args):
            loss = loop.train_step(*args)
            losses.append(float(loss))
            return loss
        return step

    monkeypatch.setattr(loop, "step_function", recording)
    # 4 steps, logged at step 3 only: the bar's figures were the 3rd step's at the end
    loop.pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.log_every=3", "train.progress=true",
                                     "train.tensorboard=false", f"out_dir={tmp_path / 'run'}"]))
    closing = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pretrain: 4/4")]
    assert len(losses) == 4 and f"{losses[2]:.4f}" != f"{losses[3]:.4f}"
    assert len(closing) == 1 and f"loss={losses[3]:.4f} lr=" in closing[0]
