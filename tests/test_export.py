import torch

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.loading import load_run
from maelab.engine.pretrain import pretrain
from maelab.export import load_encoder
from maelab.models.cpu import kernels_for
from tests.conftest import TINY


def test_exported_encoder_gives_identical_features(tmp_path, capsys):
    run_dir = pretrain(load_config(None, [*TINY, "optim.epochs=1", "model.registers=2", "train.tensorboard=false",
                                          f"out_dir={tmp_path / 'run'}"]))
    assert main(["export", str(run_dir), "--format", "safetensors"]) == 0
    weights = run_dir / "export" / "encoder.safetensors"
    assert f"wrote {weights}" in capsys.readouterr().out
    assert not weights.read_bytes().startswith(b"\x80")  # not a pickle
    encoder, info = load_encoder(weights, kernels=kernels_for("cpu"))  # the kernels the run's encoder has here
    assert info["step"] == 4 and info["spec"]["registers"] == 2 and len(info["mean"]) == 3
    original = load_run(run_dir).model.encoder
    imgs = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(encoder.forward_features(imgs), original.forward_features(imgs))
        plain, _ = load_encoder(weights)  # PyTorch's ops: the same to float rounding
        torch.testing.assert_close(plain.forward_features(imgs), original.forward_features(imgs))


def test_missing_export_is_a_clear_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none")]) == 2
    assert "run directory" in capsys.readouterr().err


def test_a_file_as_the_export_folder_is_one_clear_error(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["export", str(tmp_path / "run"), "--out", str(afile)]) == 2
    err = capsys.readouterr().err
    assert f"--out {afile} exists and is not a folder" in err and afile.read_text() == "x"


def test_an_export_of_a_kept_checkpoint_goes_under_its_tag_in_every_format(tmp_path):
    run_dir = pretrain(load_config(None, [*TINY, "optim.epochs=2", "train.keep_checkpoints=-1",
                                          "train.tensorboard=false", f"out_dir={tmp_path / 'run'}"]))
    assert main(["export", str(run_dir), "--format", "timm", "--checkpoint", "epoch:1"]) == 0
    assert (run_dir / "export" / "epoch_0001" / "timm" / "model.safetensors").is_file()
    assert not (run_dir / "export" / "timm").exists()  # the last checkpoint's export is not replaced
