import os
import subprocess
import sys

import pytest
import torch

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.loading import load_run
from maelab.engine.pretrain import pretrain
from maelab.export import load_encoder
from maelab.models.cpu import kernels_for
from tests.conftest import REPO, TINY


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    return pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false", f"out_dir={out}"]))


def wrote(out: str) -> list[str]:
    return [line.removeprefix("wrote ") for line in out.splitlines() if line.startswith("wrote ")]


def test_an_export_into_a_folder_of_the_users_files_keeps_them_and_lists_only_its_own(trained, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    assert main(["export", str(trained), "--format", "hf", "--out", str(folder)]) == 0
    out = capsys.readouterr().out
    assert wrote(out) == [str(folder / n) for n in
                          ("config.json", "maelab.json", "model.safetensors", "preprocessor_config.json")]
    assert (folder / "notes.txt").read_text() == "my notes" and "notes.txt" not in out and "replaced" not in out


def test_an_export_that_would_overwrite_a_file_no_export_wrote_is_refused_and_writes_nothing(trained, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"the user's own weights")
    (folder / "notes.txt").write_text("my notes")
    result = subprocess.run([sys.executable, "-m", "maelab", "export", str(trained), "--format", "timm", "--out",
                             str(folder)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"maelab: error: the export folder {folder} holds model.safetensors")
    assert "empty or new folder (--out DIR)" in lines[0]
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "notes.txt"]  # nothing written
    assert (folder / "model.safetensors").read_bytes() == b"the user's own weights"


def test_a_re_export_replaces_the_earlier_export_and_says_so(trained, tmp_path, capsys):
    assert main(["export", str(trained)]) == 0  # RUN_DIR/export: how users refresh an export
    assert "replaced" not in capsys.readouterr().out
    assert main(["export", str(trained)]) == 0
    out = capsys.readouterr().out
    assert wrote(out) == [str(trained / "export" / "encoder.json"), str(trained / "export" / "encoder.safetensors")]
    assert f"replaced the earlier export's encoder.json, encoder.safetensors in {trained / 'export'}" in out
    folder = tmp_path / "both"  # two formats share a folder: each refreshes its own files
    for fmt in ("safetensors", "timm", "hf-vit", "timm"):
        assert main(["export", str(trained), "--format", fmt, "--out", str(folder)]) == 0
    assert "replaced the earlier export's maelab.json, model.safetensors" in capsys.readouterr().out


def test_another_format_into_an_export_folder_removes_what_is_left_of_the_one_it_overwrote(trained, tmp_path,
                                                                                          capsys):
    from transformers import ViTMAEForPreTraining

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    for fmt in ("safetensors", "hf", "timm"):  # timm writes model.safetensors and maelab.json over hf's
        assert main(["export", str(trained), "--format", fmt, "--out", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "removed the earlier export's config.json, preprocessor_config.json (not part of this export" in out
    assert sorted(p.name for p in folder.iterdir()) == [".maelab-export.json", "encoder.json", "encoder.safetensors",
                                                        "maelab.json", "model.safetensors", "notes.txt"]
    # no HF folder half replaced by timm's weights (transformers 5 would load them under a default config)
    assert main(["export", str(trained), "--format", "hf", "--out", str(folder)]) == 0
    model, info = ViTMAEForPreTraining.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and (folder / "encoder.json").is_file()


def test_exported_weights_get_the_mode_a_plain_open_gives(trained, tmp_path, monkeypatch):
    from maelab import atomic

    monkeypatch.setattr(atomic, "FILE_MODE", 0o644)  # as under umask 022; safetensors' save_file alone writes 0600
    for fmt in ("safetensors", "hf"):
        assert main(["export", str(trained), "--format", fmt, "--out", str(tmp_path / fmt)]) == 0
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / fmt).iterdir()
                if p.suffix == ".safetensors"} in ({"encoder.safetensors": "0o644"}, {"model.safetensors": "0o644"})


def test_an_export_folder_written_before_exports_were_recorded_is_still_refreshed(trained, tmp_path, capsys):
    folder = tmp_path / "old"
    for fmt in ("safetensors", "hf"):
        assert main(["export", str(trained), "--format", fmt, "--out", str(folder)]) == 0
    (folder / ".maelab-export.json").unlink()  # as an older maelab left it: known by encoder.json and maelab.json
    for fmt in ("safetensors", "hf"):
        assert main(["export", str(trained), "--format", fmt, "--out", str(folder)]) == 0
    assert capsys.readouterr().out.count("replaced the earlier export's") == 2
