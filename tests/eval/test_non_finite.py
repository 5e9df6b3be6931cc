"""An evaluation of a checkpoint whose weights are NaN: every accuracy and reconstruction metric is null with the
reason naming the weights, never the chance-level number argmax makes of NaN features (k-NN said 10.0 before)."""

import json
import shutil

import pytest
import torch

from maelab.cli import main
from maelab.run_layout import RunLayout
from maelab.undefined import reason_of


@pytest.fixture
def nan_run(one_epoch_run, tmp_path):
    run_dir = shutil.copytree(one_epoch_run, tmp_path / "run")
    path = RunLayout(run_dir).checkpoint
    state = torch.load(path, map_location="cpu", weights_only=False)
    key = next(k for k in state["model"] if k.endswith("cls_token"))
    state["model"][key] = torch.full_like(state["model"][key], float("nan"))
    torch.save(state, path)
    return run_dir, key.rsplit(".", 1)[-1]  # named as the encoder names it


def result(run_dir, name):
    return json.loads(RunLayout(run_dir).eval_result(name).read_text())


def test_knn_of_nan_weights_is_null_naming_the_weights_not_chance(nan_run):
    run_dir, key = nan_run
    assert main(["knn", str(run_dir)]) == 0
    knn = result(run_dir, "knn")
    assert knn["top1"] is None
    assert "features are not finite" in reason_of(knn, "top1") and key in reason_of(knn, "top1")


def test_every_probe_protocol_of_nan_weights_is_null_with_the_reason(nan_run):
    run_dir, key = nan_run
    assert main(["probe", str(run_dir), "probe.epochs=1"]) == 0
    probe = result(run_dir, "probe")
    assert probe["top1"] is None and key in reason_of(probe, "top1")
    assert all(entry["top1"] is None for entry in probe["protocols"].values())


def test_reconstruction_of_nan_weights_has_null_metrics_but_keeps_the_zero_prediction_floor(nan_run):
    run_dir, key = nan_run
    assert main(["recon", str(run_dir)]) == 0
    recon = result(run_dir, "recon")
    assert recon["psnr_masked"] is None and key in reason_of(recon, "psnr_masked")
    assert recon["sharpness_ratio"] is None
    assert isinstance(recon["psnr_masked_zero_pred"], float)


def test_finetuning_nan_weights_trains_nothing_and_says_why(nan_run):
    run_dir, key = nan_run
    assert main(["finetune", str(run_dir), "finetune.epochs=1"]) == 0
    finetune = result(run_dir, "finetune")
    assert finetune["top1"] is None and finetune["steps"] == 0
    assert "not finite" in reason_of(finetune, "top1") and key in reason_of(finetune, "top1")


def test_the_same_evaluations_of_finite_weights_are_numbers(one_epoch_run, tmp_path):
    run_dir = shutil.copytree(one_epoch_run, tmp_path / "run")
    assert main(["knn", str(run_dir)]) == 0
    assert isinstance(result(run_dir, "knn")["top1"], float)
