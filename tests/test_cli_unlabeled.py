"""The commands on an unlabeled image folder: pretraining, recon, figures and export work; what needs labels says so
in one line with exit code 2 and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maelab.cli import main
from tests.test_cli import maelab

N_IMAGES = 24
FOLDER = ["data.name=folder", "data.image_size=32", "model.preset=micro", "optim.batch_size=8", "optim.epochs=1",
          "train.progress=false", "train.log_every=1"]


def make_photos(root: Path) -> Path:
    """``N_IMAGES`` seeded random-noise PNGs and JPEGs of several sizes, spread over nested folders."""
    rng = np.random.default_rng(0)
    for k in range(N_IMAGES):
        folder = root / f"roll{k % 3}" / ("night" if k % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (20 + k, 30 + 2 * k, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{k:02d}.{'jpg' if k % 4 == 0 else 'png'}")
    return root


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> tuple[Path, list[str]]:
    """(run directory, the data overrides) of one epoch of pretraining on the folder, memory-mapped from its cache
    (data.max_memory_gib=0), through the real CLI in a subprocess."""
    tmp = tmp_path_factory.mktemp("unlabeled")
    data = [f"data.root={make_photos(tmp / 'photos')}", f"data.cache_dir={tmp / 'cache'}", "data.max_memory_gib=0"]
    out = tmp / "run"
    result = maelab("pretrain", *FOLDER, *data, f"out_dir={out}")
    assert result.returncode == 0, result.stderr
    assert list((tmp / "cache").glob("folders/*/unlabeled-32px-*.npy"))  # the memory-mapped path was taken
    return out, data


def test_pretraining_on_an_unlabeled_tree_trains_on_all_its_images(pretrained) -> None:
    out, _ = pretrained
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    assert len(steps) == N_IMAGES // 8 and all(np.isfinite(r["loss"]) for r in steps)
    assert (out / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize("command", ["probe", "knn", "finetune"])
def test_an_evaluation_that_needs_labels_is_one_line_exit_2(pretrained, capsys, command) -> None:
    out, _ = pretrained
    assert main([command, str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert "has no train/<class>/ and test/<class>/ folders (an unlabeled image folder)" in err[0]
    assert f"{command} needs labels; give a labelled folder with data.root=DIR" in err[0]
    assert not (out / "eval" / f"{command}.json").exists()


def test_recon_uses_the_training_images_and_says_so(pretrained, capsys) -> None:
    out, _ = pretrained
    assert main(["recon", str(out), "recon.limit=10"]) == 0
    result = json.loads((out / "eval" / "recon.json").read_text())
    assert result["split"] == "train" and result["images"] == 10 and np.isfinite(result["psnr_masked"])


def test_figures_and_export_work_without_labels(pretrained, tmp_path, capsys) -> None:
    out, _ = pretrained
    assert main(["figures", str(out), "--out", str(tmp_path / "figs"), "--images", "4"]) == 0
    assert {"masked_inputs.png", "reconstructions.png", "mask_ratios.png"} <= {p.name for p in
                                                                               (tmp_path / "figs").iterdir()}
    assert main(["export", str(out), "--out", str(tmp_path / "export")]) == 0
    assert any(p.suffix == ".safetensors" for p in (tmp_path / "export").iterdir())


def test_the_knn_monitor_and_scratch_refuse_before_writing_anything(pretrained, tmp_path, capsys) -> None:
    _, data = pretrained
    assert main(["pretrain", *FOLDER, *data, "eval.knn_every=1", f"out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the k-NN monitor (eval.knn_every=1) needs labels" in err[0]
    assert err[0].endswith("or set eval.knn_data.root=DIR to measure on a labelled folder while pretraining on this "
                           "one, or eval.knn_every=0 to pretrain without it")
    assert main(["scratch", *FOLDER, *data, f"out_dir={tmp_path / 'scratch'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scratch (training from scratch with labels) needs labels" in err[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "scratch").exists()
