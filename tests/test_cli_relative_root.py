"""A run pretrained on a relative data.root (``data.root=photos``, as the README types it) keeps working from any
folder: evaluations, figures and --resume read the run's own images from where the run found them, and a data.root
given for one use is read as typed, never replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maelab.cli import main
from tests.test_cli_unlabeled import FOLDER, make_photos


@pytest.fixture
def run_elsewhere(tmp_path, monkeypatch) -> Path:
    """A one-epoch run of ``data.root=photos`` started in ``tmp_path``; the test then runs in ``tmp_path/elsewhere``
    and gets the run's folder relative to it."""
    monkeypatch.chdir(tmp_path)
    make_photos(tmp_path / "photos")
    assert main(["pretrain", *FOLDER, "data.root=photos", "data.cache_dir=cache", "out_dir=run"]) == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return Path("..") / "run"


def test_recon_from_another_folder_reads_the_runs_own_images(run_elsewhere, capsys) -> None:
    assert main(["recon", str(run_elsewhere)]) == 0, capsys.readouterr().err
    result = json.loads((run_elsewhere / "eval" / "recon.json").read_text())  # untagged: the run's own data
    assert result["data"]["images"] > 0


def test_resume_from_another_folder_trains_on_and_records_where_the_images_are(run_elsewhere, capsys) -> None:
    assert main(["pretrain", "--resume", str(run_elsewhere), "optim.epochs=2"]) == 0, capsys.readouterr().err
    saved = (run_elsewhere / "config.yaml").read_text()
    assert f"root: {(run_elsewhere.parent / 'photos').resolve()}" in saved
    steps = [json.loads(line) for line in (run_elsewhere / "metrics.jsonl").read_text().splitlines()]
    assert max(r["epoch"] for r in steps if r["kind"] == "step") >= 1


def test_a_data_root_given_for_one_use_is_read_as_typed(run_elsewhere, capsys) -> None:
    assert main(["recon", str(run_elsewhere), "data.root=../albums"]) == 2  # not the run's: never replaced
    assert "the image folder ../albums does not exist" in capsys.readouterr().err
