"""Weights loaded into a network built from a changed config: one clear error naming the settings and
parameters that changed; settings that keep every shape (model.img_size) load as before."""

import json

import pytest
import torch

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.checkpoint import checkpoint_path
from maelab.engine.loading import load_run
from maelab.engine.pretrain import pretrain, resume
from maelab.errors import UserError
from maelab.state_fit import changed_settings, misfits
from tests.conftest import TINY


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false", f"out_dir={out}"]))


def test_changed_settings_lists_only_the_keys_that_differ():
    assert changed_settings({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}, "model") == [
        "model.b 2 -> 3", "model.c None -> 4"]


def test_misfits_name_missing_unexpected_and_reshaped_parameters():
    net = torch.nn.Linear(3, 2)
    state = {"weight": torch.zeros(2, 4), "extra": torch.zeros(1)}
    assert misfits(net, state) == ["bias (not in the checkpoint)", "extra (in the checkpoint only)",
                                   "weight [2, 4] in the checkpoint, [2, 3] now"]
    assert misfits(net, net.state_dict()) == []


@pytest.mark.parametrize("command", ["probe", "knn", "recon", "finetune"])
def test_an_evaluation_with_another_patch_size_is_one_line_naming_it(run_dir, capsys, command):
    assert main([command, str(run_dir), "model.patch_size=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "trained with other model settings (model.patch_size 4 -> 8)" in err
    assert "drop those model.* overrides" in err
    assert not (run_dir / "eval" / f"{command}.json").exists()


@pytest.mark.parametrize("override", ["model.depth=3", "model.num_heads=1", "model.norm_pix_loss=true"])
def test_a_changed_network_is_refused_even_when_its_shapes_fit(run_dir, override):
    key = override.split("=")[0]
    with pytest.raises(UserError, match=rf"other model settings \({key} "):
        load_run(run_dir, overrides=[override])


def test_the_floor_may_take_any_architecture(run_dir):
    run = load_run(run_dir, overrides=["model.depth=3"], random_init=True)
    assert len(run.model.encoder.blocks) == 3


def test_weights_that_do_not_fit_are_one_error_naming_the_parameters():
    from maelab.state_fit import load_fitting

    with pytest.raises(UserError, match=r"the saved net does not fit .* \(model.depth 2 -> 3\): weight \[2, 4\] "
                                        r"in the checkpoint, \[2, 3\] now. Start a new run"):
        load_fitting(torch.nn.Linear(3, 2, bias=False), {"weight": torch.zeros(2, 4)}, "the saved net",
                     ["model.depth 2 -> 3"], "Start a new run")


def test_a_new_image_size_keeps_working_with_rebuilt_positions(run_dir):
    run = load_run(run_dir, overrides=["model.img_size=48"])
    assert run.model.encoder.pos_embed.shape[1] == (48 // 4) ** 2
    saved = torch.load(checkpoint_path(run_dir), weights_only=True)["model"]
    assert torch.equal(run.model.encoder.patch_embed.proj.weight, saved["encoder.patch_embed.proj.weight"])
    assert main(["probe", str(run_dir), "model.img_size=48", "probe.epochs=1"]) == 0
    assert json.loads((run_dir / "eval" / "probe.json").read_text())["model"]["img_size"] == 48


def test_resuming_with_another_discriminator_width_is_refused_before_any_write(tmp_path):
    run = pretrain(load_config(None, [*TINY, "optim.epochs=1", "gan.enabled=true", "train.tensorboard=false",
                                      f"out_dir={tmp_path / 'g'}"]))
    before = {p: p.read_bytes() for p in (run / "config.yaml", run / "metrics.jsonl", checkpoint_path(run))}
    with pytest.raises(UserError, match=r"discriminator .* \(gan.width 16 -> 8\): net.0.weight \[16, 3, 4, 4\]"):
        resume(run, ["optim.epochs=2", "gan.width=8"])
    assert {p: p.read_bytes() for p in before} == before
    resume(run, ["optim.epochs=2", "gan.lr=1e-3"])  # a setting that keeps D's shapes resumes
