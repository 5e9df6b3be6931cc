"""The k-NN monitor on labelled data other than the pretraining data (eval.knn_data): pretrain on an unlabeled
folder, measure on a labelled one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maelab.config import load_config
from maelab.engine.metrics import read_metrics
from maelab.engine.pretrain import pretrain
from maelab.errors import DataError
from maelab.eval.monitors import KnnMonitor, epoch_hooks, knn_monitor_data
from maelab.viz.curves import curve_panels
from tests.conftest import TINY

COLOURS = {"blue": (30, 30, 220), "green": (30, 220, 30), "red": (220, 30, 30)}


def noise_folder(root: Path, n: int = 64) -> Path:
    """An unlabeled folder of ``n`` random 12 x 12 PNGs (no train/ or test/)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


def colour_folder(root: Path, train: int = 5, test: int = 3) -> Path:
    """A labelled folder of three classes told apart by colour alone: train/<colour>/ and test/<colour>/."""
    rng = np.random.default_rng(1)
    for split, n in (("train", train), ("test", test)):
        for name, rgb in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                px = np.clip(np.array(rgb) + rng.integers(-20, 21, (12, 12, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(root / split / name / f"{i}.png")
    return root


def folder_run(tmp_path: Path, *extra: str) -> list[str]:
    return [*TINY, "data.name=folder", f"data.root={noise_folder(tmp_path / 'photos')}", "optim.batch_size=32",
            "train.tensorboard=false", f"out_dir={tmp_path / 'run'}", *extra]


def test_the_monitor_measures_a_labelled_folder_while_pretraining_reads_an_unlabeled_one(tmp_path):
    labelled = colour_folder(tmp_path / "colours")
    cfg = load_config(None, folder_run(tmp_path, "optim.epochs=2", "eval.knn_every=1",
                                       f"eval.knn_data.root={labelled}"))
    run_dir = pretrain(cfg, monitors=epoch_hooks)
    epochs = [r for r in read_metrics(run_dir) if r["kind"] == "epoch"]
    assert len(epochs) == 2
    for record in epochs:
        assert record["knn_top1"] >= 90  # the colours are trivially separable: measured on the labelled folder
        data = record["knn_data"]  # which data the number was measured on: 15 bank, 9 query images
        assert (data["name"], data["root"], data["split"]) == ("folder", str(labelled.resolve()), "test")
        assert (data["train_images"], data["test_images"], data["images"]) == (15, 9, 9) and data["tag"]
    knn = [p for p in curve_panels(read_metrics(run_dir)) if p.title.startswith("k-NN")]
    assert [s[2] for s in knn[0].series] == ["k-NN top-1 on folder colours"]  # the curve names its data


def test_the_monitor_on_the_runs_own_data_holds_no_second_copy():
    hooks = epoch_hooks(load_config(None, [*TINY, "eval.knn_every=2"]))
    assert hooks == [KnnMonitor(2)]  # no second copy of the images


def test_an_unlabeled_monitor_folder_is_refused_in_one_line_before_anything_is_written(tmp_path):
    other = noise_folder(tmp_path / "more_photos")
    cfg = load_config(None, folder_run(tmp_path, "eval.knn_every=1", f"eval.knn_data.root={other}"))
    with pytest.raises(DataError) as err:
        pretrain(cfg, monitors=epoch_hooks)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"eval.knn_data.root={other} has no train/<class>/")
    assert "the k-NN monitor (eval.knn_every=1) needs labels" in message and "eval.knn_every=0" in message
    assert not (tmp_path / "run").exists()


def test_an_unlabeled_pretraining_folder_without_monitor_data_names_the_setting(tmp_path):
    cfg = load_config(None, folder_run(tmp_path, "eval.knn_every=1"))
    with pytest.raises(DataError, match=r"needs labels; .* or set eval.knn_data.root=DIR to measure on a labelled "
                                        r"folder while pretraining on this one"):
        epoch_hooks(cfg)


def test_the_monitor_data_lays_eval_knn_data_over_the_data_section(tmp_path):
    base = ["data.name=cifar10", "data.image_size=48", "data.limit_train=1000", "data.limit_test=500"]
    folder = knn_monitor_data(load_config(None, [*base, f"eval.knn_data.root={tmp_path}"]))
    assert (folder.name, folder.root, folder.image_size) == ("folder", str(tmp_path), 48)  # a root alone: a folder
    assert (folder.limit_train, folder.limit_test) == (None, None)  # the pretraining limits are not its
    own = knn_monitor_data(load_config(None, [*base, "eval.knn_data.limit_test=100"]))
    assert (own.name, own.limit_train, own.limit_test) == ("cifar10", 1000, 100)  # the run's data, fewer queries
    assert knn_monitor_data(load_config(None, base)) == load_config(None, base).data
