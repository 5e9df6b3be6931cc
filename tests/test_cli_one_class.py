"""A labelled image folder of one class (issue 29): pretraining works; every evaluation that classifies (probe, knn,
finetune, scratch, the k-NN monitor) is refused in one line, exit 2, nothing written: it scored 100% by
construction (knn top1=100, probe top1=100), the only class being every prediction."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from maelab.cli import main

FOLDER = ["data.name=folder", "model.preset=micro", "optim.batch_size=8", "optim.epochs=1", "train.progress=false"]


def one_class_folder(root: Path) -> Path:
    for split, n in (("train", 8), ("test", 4)):
        (root / split / "cat").mkdir(parents=True)
        for k in range(n):
            Image.new("RGB", (32, 32), (30 * k, 100, 200 - 20 * k)).save(root / split / "cat" / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("one_class")
    root, out = one_class_folder(tmp / "cats"), tmp / "run"
    assert main(["pretrain", *FOLDER, f"data.root={root}", f"out_dir={out}"]) == 0  # needs no labels
    return root, out


@pytest.mark.parametrize("command", [["knn"], ["probe", "probe.epochs=1"], ["finetune", "finetune.epochs=1"]])
def test_an_evaluation_of_a_one_class_folder_is_refused_not_a_top1_of_100(run, capsys, command):
    root, out = run
    capsys.readouterr()
    assert main([command[0], str(out), *command[1:]]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("maelab: error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"maelab: error: data.root={root} has one class ({root / 'train' / 'cat'}): {command[0]} would score 100% "
        "by construction")
    assert not (out / "eval").exists()


def test_the_knn_monitor_and_scratch_on_a_one_class_folder_are_refused_before_any_folder_is_made(run, tmp_path):
    root, _ = run
    for command in (["pretrain", "eval.knn_every=1"], ["scratch"]):
        out = tmp_path / command[0]
        assert main([*command, *FOLDER, f"data.root={root}", f"out_dir={out}"]) == 2
        assert not out.exists()
