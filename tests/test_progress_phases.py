"""Progress of the phases a user waits for besides pretraining: decoding an image folder, extracting features, the
linear probe's epochs. Shown once a phase has run a few seconds (maelab.progress.SHORT_PHASE_S), as plain lines in
a log; nothing with train.progress=false."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import maelab.progress
from maelab.config import load_config
from maelab.engine.pretrain import pretrain
from maelab.eval.commands import run_probe
from maelab.progress import SHORT_PHASE_S, Progress, phase
from tests.conftest import REPO, TINY
from tests.eval.test_knn_monitor_data import colour_folder
from tests.test_progress import Clock

# `maelab probe` as the CLI runs it, with every phase counted as long (a tiny folder decodes in milliseconds)
PROBE = ("import sys, maelab.progress; maelab.progress.SHORT_PHASE_S = 0.0; from maelab.cli import main; "
         "sys.exit(main(sys.argv[1:]))")
PHASES = ("decoding train/: ", "decoding test/: ", "features of the train images: ", "features of the test images: ",
          "probe: ")


def test_a_short_phase_shows_nothing_and_a_long_one_its_closing_line():
    closing = "decoding: 10/10 images (100%); 6 s elapsed\n"
    for seconds, shown in ((SHORT_PHASE_S - 1, ""), (SHORT_PHASE_S + 1, closing)):
        log, clock = io.StringIO(), Clock()
        with Progress(10, "decoding", unit="image", stream=log, clock=clock, delay=SHORT_PHASE_S) as bar:
            clock.now = seconds
            bar.update(10)
        assert log.getvalue() == shown
    assert phase(10, "probe", "epoch").delay == SHORT_PHASE_S and not phase(10, "probe", "epoch", False).enabled


def probe_into_a_log(tmp_path: Path, progress: str) -> str:
    """`maelab probe RUN train.progress=...` of a run on a labelled folder, its stderr written to a file."""
    run = load_config(None, [*TINY, "data.name=folder", f"data.root={colour_folder(tmp_path / 'colours')}",
                             "optim.batch_size=8", "optim.epochs=1", "train.tensorboard=false",
                             f"out_dir={tmp_path / 'run'}"])
    pretrain(run)
    log = tmp_path / f"probe-{progress}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    with log.open("w") as f:
        done = subprocess.run([sys.executable, "-c", PROBE, "probe", str(tmp_path / "run"), "probe.epochs=3",
                               "probe.batch_size=4", "eval.feature_cache=false", f"data.cache_dir={tmp_path / 'c'}",
                               f"train.progress={progress}"], stdout=subprocess.DEVNULL, stderr=f, env=env,
                              timeout=300)
    assert done.returncode == 0, log.read_text()
    return log.read_text()


def test_an_evaluation_into_a_log_file_writes_plain_lines_of_each_phase_and_none_with_progress_off(tmp_path):
    text = probe_into_a_log(tmp_path, "true")
    assert "\r" not in text
    lines = text.splitlines()
    for start in PHASES:
        assert [line for line in lines if line.startswith(start)], f"no line of {start!r} in:\n{text}"
    assert "decoding train/: 15/15 images (100%)" in text and "features of the test images: 9/9 images" in text
    assert "probe: 3/3 epochs (100%)" in text


def test_with_progress_off_an_evaluation_shows_no_phase(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(maelab.progress, "SHORT_PHASE_S", 0.0)
    run = load_config(None, [*TINY, "data.name=folder", f"data.root={colour_folder(tmp_path / 'colours')}",
                             "optim.batch_size=8", "optim.epochs=1", "train.tensorboard=false",
                             f"out_dir={tmp_path / 'run'}"])
    run_probe(pretrain(run), ["probe.epochs=3", "probe.batch_size=4", "eval.feature_cache=false",
                              f"data.cache_dir={tmp_path / 'c'}", "train.progress=false"])
    err = capsys.readouterr().err
    assert not [line for line in err.splitlines() if line.startswith(PHASES)], err
