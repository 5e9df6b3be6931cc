import json

import pytest

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.pretrain import pretrain
from tests.conftest import TINY

QUICK = ["probe.epochs=3", "finetune.epochs=1", "finetune.batch_size=64", "eval.batch_size=128"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false", f"out_dir={out}"]))


@pytest.mark.parametrize("command,keys", [
    ("probe", {"top1", "top5", "epochs", "pool", "checkpoint"}),
    ("knn", {"top1", "k"}),
    ("recon", {"psnr_masked", "psnr_full", "ssim_masked", "ssim_full", "sharpness_ratio", "psnr_masked_zero_pred"}),
    ("finetune", {"top1", "top5", "epochs"}),
])
def test_each_evaluation_writes_its_json(run_dir, capsys, command, keys):
    assert main([command, str(run_dir), *QUICK]) == 0
    assert f"wrote {run_dir / 'eval' / (command + '.json')}" in capsys.readouterr().out
    result = json.loads((run_dir / "eval" / f"{command}.json").read_text())
    assert keys <= set(result)
    assert result["checkpoint"].endswith("last.pt") and result["step"] == 4 and result["seed"] == 0
    assert command in result and "model" in result


def test_random_init_writes_beside_and_differs(run_dir):
    assert main(["knn", str(run_dir), "--random-init"]) == 0
    assert main(["knn", str(run_dir)]) == 0
    floor = json.loads((run_dir / "eval" / "knn_random_init.json").read_text())
    trained = json.loads((run_dir / "eval" / "knn.json").read_text())
    assert floor["random_init"] is True and floor["checkpoint"] == "random-init"
    assert trained["random_init"] is False
    assert floor["top1"] != trained["top1"]


def test_overrides_after_options_are_applied(run_dir):
    assert main(["probe", str(run_dir), "--random-init", "probe.pool=cls", "probe.epochs=2"]) == 0
    result = json.loads((run_dir / "eval" / "probe_random_init.json").read_text())
    assert (result["pool"], result["epochs"]) == ("cls", 2)


def test_scratch_trains_into_its_own_run_directory(tmp_path):
    out = tmp_path / "scratch"
    assert main(["scratch", *TINY, *QUICK, f"out_dir={out}"]) == 0
    result = json.loads((out / "eval" / "scratch.json").read_text())
    assert result["checkpoint"] == "random-init" and 0 <= result["top1"] <= 100
    assert (out / "config.yaml").is_file()


def test_missing_or_corrupt_checkpoint_is_one_clear_error(tmp_path, run_dir, capsys):
    assert main(["probe", str(tmp_path / "nothing")]) == 2
    assert "run directory" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["knn", str(run_dir), "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maelab: error: cannot load checkpoint") and len(err.strip().splitlines()) == 1


def test_augmented_probe_reextracts_features_each_epoch(run_dir, monkeypatch):
    from maelab.eval import commands

    calls = []
    real = commands.extract_layers
    monkeypatch.setattr(commands, "extract_layers", lambda *a, **k: calls.append(k["aug"]) or real(*a, **k))
    assert main(["probe", str(run_dir), "probe.augment=true", "probe.epochs=3", "eval.batch_size=128"]) == 0
    assert calls.count(None) == 1 and sum(c is not None for c in calls) == 3  # test once, train every epoch
    assert json.loads((run_dir / "eval" / "probe.json").read_text())["probe"]["augment"] is True


def test_recon_on_single_colour_images_writes_null_and_the_reason_not_a_huge_number(tmp_path, capsys):
    """The issue: `maelab recon RUN` on a folder of single-colour images reported sharpness_ratio ~1.9e16."""
    from tests.data.test_folder import make_image_folder

    root = make_image_folder(tmp_path / "flat")  # 12 training and 6 test images, each one solid colour
    out = tmp_path / "run"
    assert main(["pretrain", "data.name=folder", f"data.root={root}", "model.preset=micro", "optim.batch_size=4",
                 "optim.epochs=1", "train.progress=false", "train.tensorboard=false", f"out_dir={out}"]) == 0
    capsys.readouterr()
    assert main(["recon", str(out)]) == 0
    printed = capsys.readouterr().out
    text = (out / "eval" / "recon.json").read_text()
    result = json.loads(text)
    assert result["sharpness_ratio"] is None and "NaN" not in text and "Infinity" not in text
    assert result["undefined"]["sharpness_ratio"].startswith("the targets have no edges")
    assert result["psnr_masked"] > 0 and result["images"] == 6
    assert "sharpness_ratio=–" in printed and "  sharpness_ratio = –: the targets have no edges" in printed


def test_a_non_finite_result_is_refused_before_anything_is_written(tmp_path):
    from maelab.eval.commands import write_result

    with pytest.raises(ValueError, match=r"non-finite number at psnr, left_out\.x\.count"):
        write_result(tmp_path, "recon", {"psnr": float("inf"), "left_out": {"x": {"count": float("nan")}}})
    assert not (tmp_path / "eval" / "recon.json").exists()
    write_result(tmp_path, "recon", {"psnr": None, "undefined": {"psnr": "why"}})
    assert json.loads((tmp_path / "eval" / "recon.json").read_text()) == {"psnr": None, "undefined": {"psnr": "why"}}


def test_evaluations_run_on_the_threads_train_threads_names(run_dir):
    import torch

    assert main(["knn", str(run_dir), "train.threads=1"]) == 0
    assert torch.get_num_threads() == 1  # (the autouse fixture gives the test session its threads back)
