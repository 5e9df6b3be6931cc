import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from maelab.cli import main
from tests.conftest import REPO, TINY


def maelab(*args, cwd=None, env=None):
    """Run the real CLI in a subprocess."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "maelab", *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=300)


def test_pretrain_then_resume_writes_the_run_directory(tmp_path):
    out = tmp_path / "run"
    first = maelab("pretrain", *TINY, "optim.epochs=1", f"out_dir={out}")
    assert first.returncode == 0, first.stderr
    assert f"run directory: {out}" in first.stdout
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt"):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    second = maelab("pretrain", "--resume", str(out), "optim.epochs=2")
    assert second.returncode == 0, second.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [0, 1]
    assert {"epoch", "step", "loss", "lr", "mask_ratio", "img_per_s"} <= set(records[0])
    assert "optim:\n  epochs: 2" in (out / "config.yaml").read_text()


def test_bad_input_in_a_real_process_is_one_line_exit_2(tmp_path):
    result = maelab("pretrain", "optim.lrr=0.1", f"out_dir={tmp_path / 'x'}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "did you mean 'optim.lr'" in lines[0]
    assert not (tmp_path / "x").exists()


def test_an_image_folder_with_an_unscalable_image_is_one_line_exit_2(tmp_path):
    (tmp_path / "imgs" / "train" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "test" / "a").mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 2.0, dtype=np.float32)).save(tmp_path / "imgs" / "train" / "a" / "hdr.tif")
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "test" / "a" / "ok.png")
    result = maelab("pretrain", *TINY, "data.name=folder", f"data.root={tmp_path / 'imgs'}", "data.image_size=8",
                    "optim.epochs=1", f"out_dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "hdr.tif is a floating-point image (Pillow mode F)" in lines[0]
    assert "convert it to an 8-bit RGB PNG" in lines[0]


@pytest.mark.parametrize("args,fragment", [
    (["optim.epochz=1"], "did you mean 'optim.epochs'"),
    (["optim.epochs=two"], "optim.epochs"),
    (["model.img_size=30"], "not divisible by the patch size"),
    (["mask.ratio=1.2"], "outside [0, 1]"),
    (["data.limit_train=100000"], "larger than"),
    (["optim.batch_size=1024"], "larger than"),
    (["data.name=cifar10", "data.root=/nonexistent", "data.download=false"], "cifar-10-batches-py"),
])
def test_bad_inputs_give_one_clear_error(tmp_path, capsys, monkeypatch, args, fragment):
    monkeypatch.delenv("MAELAB_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    code = main(["pretrain", *TINY, "optim.epochs=1", f"out_dir={tmp_path / 'run'}", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("maelab: error: ") and fragment in err
    assert len(err.strip().splitlines()) == 1


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", *TINY, "optim.epochs=1", "train.tensorboard=false", f"out_dir={out}"]) == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    assert main(["pretrain", *TINY, "optim.epochs=1", f"out_dir={out}"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["pretrain", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_demo_falls_back_to_synthetic_and_prints_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MAELAB_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = tmp_path / "demo"
    args = [*TINY, "data.limit_train=null", "data.limit_test=null", "data.download=false", "optim.epochs=1",
            "probe.epochs=2", f"out_dir={out}"]
    assert main(["demo", *[a for a in args if not a.startswith("data.name")]]) == 0
    printed = capsys.readouterr().out
    assert "uses the synthetic set instead" in printed
    assert "random init" in printed and "probe top-1 %" in printed
    for name in ("probe", "knn", "recon", "probe_random_init", "knn_random_init", "recon_random_init"):
        assert (out / "eval" / f"{name}.json").is_file()
    assert (out / "figures" / "curves.png").is_file()


def test_an_unexpected_exception_is_one_line_exit_1_with_the_traceback_kept(monkeypatch, tmp_path, capsys):
    from maelab.eval import commands

    def broken(*args):
        raise ValueError("Expected more than 1 value per channel\nsecond line")

    monkeypatch.setattr(commands, "run_knn", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert main(["knn", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "internal error in `knn`: ValueError: Expected more than 1 value per channel;" in err
    saved = list(tmp_path.glob("maelab-traceback-*.txt"))
    assert len(saved) == 1 and str(saved[0]) in err and "Traceback" in saved[0].read_text()
    with pytest.raises(ValueError):
        main(["--debug", "knn", str(tmp_path)])


def test_a_run_that_fails_on_its_data_leaves_no_folder_and_an_overwritten_run_intact(tmp_path):
    missing = ["data.name=folder", f"data.root={tmp_path / 'nothing'}"]
    result = maelab("pretrain", *TINY, *missing, f"out_dir={tmp_path / 'new'}")
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "new").exists()
    old = tmp_path / "old"
    assert maelab("pretrain", *TINY, "optim.epochs=1", f"out_dir={old}").returncode == 0
    kept = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    result = maelab("pretrain", *TINY, *missing, "overwrite=true", f"out_dir={old}")
    assert result.returncode == 2
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == kept
