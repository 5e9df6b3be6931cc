"""Where a run is written (issue 29): ``~`` in out_dir is the home folder, as in data.root, and a resume continues
a run in its own folder (an out_dir given with --resume is refused, not ignored)."""

from __future__ import annotations

from maelab.cli import main
from tests.conftest import TINY


def test_out_dir_under_the_home_folder_is_written_there_not_into_a_folder_named_tilde(tmp_path, monkeypatch, capsys):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    assert main(["pretrain", *TINY, "optim.epochs=1", "out_dir=~/runs/a"]) == 0  # quoted in a shell, or from YAML
    assert (home / "runs" / "a" / "checkpoints" / "last.pt").is_file()
    assert list(cwd.iterdir()) == []  # was ./~/runs/a
    assert f"run directory: {home / 'runs' / 'a'}" in capsys.readouterr().out


def test_a_resume_given_an_out_dir_is_refused_in_one_line_and_trains_nothing(tmp_path, capsys):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    assert main(["pretrain", *TINY, "optim.epochs=1", f"out_dir={run}"]) == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(run), "optim.epochs=2", f"out_dir={elsewhere}"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("maelab: error:")]
    assert errors == [f"maelab: error: out_dir={elsewhere}: --resume continues {run} in its own folder: drop out_dir "
                      "(to continue the run elsewhere, copy the folder there and resume the copy)"]
    assert not elsewhere.exists() and (run / "checkpoints" / "last.pt").read_bytes() == before  # trained in run/
