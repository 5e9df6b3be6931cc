"""`--checkpoint epoch:N`: every command that takes a checkpoint opens the one kept after N epochs, and what it
writes is tagged (eval/<name>@epoch_0001.json, figures/epoch_0001/, export/epoch_0001/) beside last.pt's."""

import json

import pytest
import torch

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.checkpoint import load_checkpoint
from maelab.engine.loading import load_run
from maelab.engine.pretrain import pretrain
from maelab.run_layout import RunLayout
from tests.conftest import TINY

COMMANDS = ["probe", "knn", "recon", "finetune", "figures", "export"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Two epochs of 4 steps, both kept."""
    out = tmp_path_factory.mktemp("runs") / "kept"
    return pretrain(load_config(None, [*TINY, "optim.epochs=2", "train.keep_checkpoints=-1",
                                       "train.tensorboard=false", f"out_dir={out}"]))


def test_epoch_n_opens_the_weights_kept_after_n_epochs_not_the_last_ones(run_dir):
    run = load_run(run_dir, "epoch:1")
    kept = load_checkpoint(RunLayout(run_dir).epoch_checkpoint(1))["model"]
    last = load_run(run_dir).model.state_dict()
    state = run.model.state_dict()
    assert (run.step, run.tag, run.checkpoint.name) == (4, "epoch_0001", "epoch_0001.pt")
    assert all(torch.equal(state[k], kept[k]) for k in kept)
    assert not all(torch.equal(state[k], last[k]) for k in last)


def test_an_evaluation_of_a_kept_epoch_writes_beside_the_last_checkpoints_result(run_dir, capsys):
    layout = RunLayout(run_dir)
    assert main(["knn", str(run_dir)]) == 0
    last_text = layout.eval_result("knn").read_text()
    assert main(["knn", str(run_dir), "--checkpoint", "epoch:1"]) == 0
    tagged = layout.eval_dir / "knn@epoch_0001.json"
    assert f"wrote {tagged}" in capsys.readouterr().out
    assert layout.eval_result("knn").read_text() == last_text  # last.pt's result untouched
    result = json.loads(tagged.read_text())
    assert result["checkpoint"].endswith("epoch_0001.pt") and result["step"] == 4
    assert json.loads(last_text)["step"] == 8


def test_the_kept_file_given_as_a_path_is_tagged_the_same_way(run_dir):
    assert main(["recon", str(run_dir), "--checkpoint", str(RunLayout(run_dir).epoch_checkpoint(2)),
                 "recon.limit=16"]) == 0
    assert json.loads((run_dir / "eval" / "recon@epoch_0002.json").read_text())["step"] == 8


def test_export_and_figures_of_a_kept_epoch_go_to_their_own_folders(run_dir):
    assert main(["export", str(run_dir), "--checkpoint", "epoch:1"]) == 0
    assert json.loads((run_dir / "export" / "epoch_0001" / "encoder.json").read_text())["step"] == 4
    assert not (run_dir / "export" / "encoder.json").exists()
    assert main(["figures", str(run_dir), "--checkpoint", "epoch:1", "--images", "2", "--ratios", "0.5"]) == 0
    assert (run_dir / "figures" / "epoch_0001" / "reconstructions.png").is_file()
    assert not (run_dir / "figures" / "reconstructions.png").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_epoch_is_one_line_listing_the_kept_epochs_and_how_to_keep_more(run_dir, capsys, command):
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    assert main([command, str(run_dir), "--checkpoint", "epoch:7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"maelab: error: {run_dir} holds no checkpoint of epoch 7 "
                                               "(kept epochs: 1, 2)")
    assert "train.keep_checkpoints=K" in err[0]
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # nothing written


def test_a_run_that_keeps_nothing_says_so(tmp_path, capsys):
    run_dir = pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false",
                                          f"out_dir={tmp_path / 'plain'}"]))
    assert main(["probe", str(run_dir), "--checkpoint", "epoch:1"]) == 2
    assert "it keeps no epoch checkpoints, only checkpoints/last.pt" in capsys.readouterr().err


def test_a_malformed_epoch_is_one_clear_error(run_dir, capsys):
    assert main(["knn", str(run_dir), "--checkpoint", "epoch:first"]) == 2
    assert "--checkpoint epoch:first is not valid: give epoch:N" in capsys.readouterr().err
