"""Evaluation settings and dataset sizes at their edges: one clear error naming the setting, or the right result;
never a library traceback."""

import json

import pytest

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.pretrain import pretrain
from maelab.errors import ConfigError
from tests.conftest import TINY


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false", f"out_dir={out}"]))


def test_a_probe_batch_of_one_image_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="probe.batch_size=1 is too small: the probe's BatchNorm needs at least 2"):
        load_config(None, ["probe.batch_size=1"])


def test_a_probe_on_one_training_image_is_one_line_naming_data_limit_train(run_dir, capsys):
    assert main(["probe", str(run_dir), "data.limit_train=1", "probe.epochs=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == ["maelab: error: the probe's training set holds 1 image(s): its BatchNorm needs at "
                                "least 2; raise data.limit_train"]


def test_a_probe_on_two_training_images_trains(run_dir):
    assert main(["probe", str(run_dir), "data.limit_train=2", "probe.epochs=2", "probe.batch_size=2"]) == 0
    assert json.loads((run_dir / "eval" / "probe@train2.json").read_text())["train_images"] == 2  # data tag


def test_finetune_with_a_batch_of_one_trains(run_dir):
    assert main(["finetune", str(run_dir), "data.limit_train=4", "finetune.batch_size=1", "finetune.epochs=1"]) == 0
    assert json.loads((run_dir / "eval" / "finetune@train4.json").read_text())["steps"] == 4  # data tag


@pytest.mark.parametrize("command", ["finetune", "scratch"])
def test_a_finetune_batch_larger_than_the_data_names_finetune_batch_size(run_dir, tmp_path, capsys, command):
    where = [str(run_dir)] if command == "finetune" else [*TINY, f"out_dir={tmp_path / 's'}"]
    assert main([command, *where, "finetune.batch_size=300"]) == 2
    assert "finetune.batch_size=300 is larger than the training set (256 images)" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_knn_with_k_above_the_bank_reports_the_k_it_used(run_dir):
    assert main(["knn", str(run_dir), "knn.k=1000"]) == 0
    result = json.loads((run_dir / "eval" / "knn.json").read_text())
    assert (result["k"], result["k_requested"]) == (256, 1000)
