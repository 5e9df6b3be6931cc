"""Figures for a paper (issue 31): runs labelled by what tells them apart, attention columns named by file with a
colorbar and a mean over heads, curves with only the panels that have data and whole epochs counted from 1,
accuracy axes from the floor or zero, and `maelab figures RUN key=value ...` on other data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maelab.ablate.results import SUITE_NAME, run_dir_of
from maelab.cli import main
from maelab.config import load_config
from maelab.data import load_dataset
from maelab.engine.pretrain import pretrain
from maelab.viz import compare, curves_figure, lr_schedule_figure, run_figures
from maelab.viz.ablation_plots import epoch_curves_figure, variant_bars_figure, variant_curves_figure
from maelab.viz.attention import attention_figure
from maelab.viz.compare import compare_file_name, run_labels
from maelab.viz.image_names import eval_image_ids
from maelab.viz.plots import LR_LABEL
from maelab.viz.samples import pick_samples, sample_indices
from tests.conftest import TINY


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two one-epoch runs whose folders have the same name: x/seed0 and y/seed0 (4 steps each)."""
    root = tmp_path_factory.mktemp("paper")
    make = lambda d, seed: pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false",  # noqa: E731
                                                       f"train.seed={seed}", f"out_dir={root / d / 'seed0'}"]))
    return make("x", 0), make("y", 1)


@pytest.fixture
def saved(monkeypatch):
    """{file name: figure} of every figure written."""
    found = {}

    def save(fig, path):
        found[path.name] = fig
        return path

    monkeypatch.setattr(run_figures, "_save", save)
    monkeypatch.setattr(compare, "_save", save)
    return found


def texts(labels):
    return [t.get_text() for t in labels]


def whole(ticks):
    return len(ticks) > 0 and all(float(t).is_integer() for t in ticks)


def test_compare_labels_the_runs_by_what_tells_them_apart(runs, saved, capsys):
    x, y = runs
    assert main(["figures", str(x), str(y), "--compare", "--images", "2"]) == 0
    assert capsys.readouterr().out.split() == [str(x / "figures" / "compare_x-seed0_vs_y-seed0.png")]
    fig = saved["compare_x-seed0_vs_y-seed0.png"]
    rows = texts(fig.axes[0].get_yticklabels())
    assert rows[2:] == ["x/seed0\n(step 4)", "y/seed0\n(step 4)"]
    assert "x/seed0 vs y/seed0" in fig.texts[0].get_text()
    assert main(["figures", str(x), str(y), "--compare", "--images", "2", "--labels", "baseline", "gan"]) == 0
    assert capsys.readouterr().out.split() == [str(x / "figures" / "compare_baseline_vs_gan.png")]
    assert texts(saved["compare_baseline_vs_gan.png"].axes[0].get_yticklabels())[2:] == [
        "baseline\n(step 4)", "gan\n(step 4)"]
    assert main(["figures", str(x), str(y), "--compare", "--labels", "only-one"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--labels takes one different, non-empty label per run" in err[0]


def test_run_labels_name_an_ablations_runs_by_variant_and_seed(tmp_path):
    out = tmp_path / "suite"
    dirs = {(v, s): run_dir_of(out, v, s) for v in ("baseline", "gan") for s in (0, 1)}
    for d in dirs.values():
        d.mkdir(parents=True)
    (out / SUITE_NAME).write_text("name: suite\n")
    assert run_labels([dirs["baseline", 0], dirs["gan", 0]]) == ["baseline/seed0", "gan/seed0"]
    assert run_labels([dirs["baseline", 0], dirs["baseline", 1]]) == ["baseline/seed0", "baseline/seed1"]
    (out / SUITE_NAME).unlink()  # no longer an ablation: plain folders, named as far up as tells them apart
    assert run_labels([dirs["baseline", 0], dirs["baseline", 1]]) == ["seed0", "seed1"]
    assert run_labels([dirs["baseline", 0], dirs["gan", 0]]) == ["baseline/seed0", "gan/seed0"]
    assert run_labels([dirs["gan", 1], dirs["gan", 1]])[1].endswith("gan/seed1 (2)")
    assert compare_file_name(["baseline/seed0", "gan/seed0"]) == "compare_baseline-seed0_vs_gan-seed0.png"
    assert compare_file_name(["a" * 80, "b" * 80]) == "compare.png"


def write_png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12, 3), value, dtype=np.uint8)).save(path)


def test_figures_take_data_overrides_and_name_attention_columns_by_file(runs, saved, tmp_path, capsys):
    x, _ = runs
    photos = tmp_path / "photos"
    for k, name in enumerate(["beach.png", "harbour.png", "IMG_20190803_141522.png"]):
        write_png(photos / name, 60 * k + 20)
    out = tmp_path / "figs"
    assert main(["figures", str(x), "data.name=folder", f"data.root={photos}", "data.image_size=32", "--images", "3",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().out.split()[0] == str(out / "masked_inputs.png")
    fig = saved["attention.png"]
    assert texts(fig.axes[0].get_xticklabels()) == ["IMG_20190803_\n141522.png", "beach.png", "harbour.png"]
    assert texts(fig.axes[0].get_yticklabels()) == ["original", "mean of the\n2 heads", "head 0", "head 1"]
    assert len(fig.axes) == 2 and "attention" in fig.axes[1].get_ylabel()  # the colorbar
    assert "on folder photos/" in saved["masked_inputs.png"].texts[0].get_text()
    lr = next(ln for ax in saved["lr_schedule.png"].axes for ln in ax.get_lines() if ln.get_label() == LR_LABEL)
    assert list(lr.get_xdata()) == [0, 1, 2, 3]  # the schedule as trained (256 images / 64), not the folder's


def test_columns_without_files_name_the_test_image_and_its_class():
    cfg = load_config(None, TINY)
    data = load_dataset(cfg.data, cfg.train.seed)
    samples = pick_samples(data, 32, 4, seed=0)
    index = sample_indices(data.y_test, 4, 0).tolist()
    assert samples.columns == [f"test image #{i}\n{data.classes[int(data.y_test[i])]}" for i in index]
    maps = torch.rand(4, 3, 8, 8)
    fig = attention_figure(samples.original, maps, samples.columns, "t")
    assert texts(fig.axes[0].get_xticklabels()) == samples.columns
    assert texts(fig.axes[0].get_yticklabels())[1] == "mean of the\n3 heads"


@pytest.mark.parametrize("labelled", [True, False])
def test_file_names_follow_the_images_the_limits_kept(tmp_path, labelled):
    root = tmp_path / "folder"
    value = {}
    for c, cls in enumerate(["cat", "dog"]):
        for k in range(5):
            name = f"{cls}{k}.png"
            value[name] = 20 * k + 100 * c + 10
            write_png(root / ("test" if labelled else "") / cls / name, value[name])
            if labelled:
                write_png(root / "train" / cls / name, 0)
    limit = "data.limit_test=4" if labelled else "data.limit_train=6"
    cfg = load_config(None, [*TINY, "data.name=folder", f"data.root={root}", "data.image_size=8", limit,
                             f"data.cache_dir={tmp_path / 'cache'}"])
    data = load_dataset(cfg.data, cfg.train.seed)
    names = eval_image_ids(data)
    x, _, _ = data.eval_images()
    assert len(names) == len(x) == (4 if labelled else 6)
    assert [value[n] for n in names] == x[:, 0, 0, 0].tolist()  # each name is the file the image was read from


def test_curves_draw_only_the_logged_panels_with_whole_epochs_from_one():
    records = [{"kind": "step", "epoch": 0, "step": 3, "loss": 1.0},
               {"kind": "epoch", "epoch": 0, "step": 5, "loss": 0.9, "mask_ratio": 0.75},
               {"kind": "epoch", "epoch": 1, "step": 10, "loss": 0.8, "mask_ratio": 0.5}]
    fig = curves_figure(records)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "mask ratio"]
    ratio = fig.axes[1].get_lines()[0]
    assert list(ratio.get_xdata()) == [1, 2]  # epoch 0 of metrics.jsonl is drawn as epoch 1, as the ablation does
    assert all(whole(ax.get_xticks()) for ax in fig.axes)
    knn = curves_figure([{**r, "knn_top1": 31.5} if r["kind"] == "epoch" else r for r in records])
    assert [ax.get_title() for ax in knn.axes] == ["loss", "mask ratio", "k-NN top-1 (%)"]
    assert knn.axes[2].get_ylim()[0] == 0.0
    lr = lr_schedule_figure(list(range(10)), [1e-3] * 10, warmup_steps=0, steps_per_epoch=5)
    assert whole(lr.axes[0].child_axes[0].get_xticks())  # the epoch axis on top


def test_accuracy_axes_start_at_the_floor_or_at_zero():
    values = {"probe_top1": {"base": [54.0, 55.0], "gan": [56.0, 57.5]}}
    floored = variant_bars_figure(values, {"probe_top1": [44.0, 44.5]}, "top-1 (%)", "t")
    assert floored.axes[0].get_ylim()[0] == 44.0  # the floor (44.25) rounded down, not the data's 54
    assert variant_bars_figure(values, {}, "top-1 (%)", "t").axes[0].get_ylim()[0] == 0.0
    below = {"probe_top1": {"base": [41.5, 55.0]}}
    assert variant_bars_figure(below, {"probe_top1": [44.0, 44.5]}, "top-1", "t").axes[0].get_ylim()[0] == 41.0
    curves = {"base": {5: [50.0, 51.0], 10: [53.0, 54.0]}}
    assert epoch_curves_figure(curves, "top-1", "t", floor=[40.2, 40.4]).axes[0].get_ylim()[0] == 40.0
    assert epoch_curves_figure(curves, "top-1", "t").axes[0].get_ylim()[0] == 0.0
    ratios = variant_curves_figure({"linear": ([1, 2, 3], [0.1, 0.5, 0.9])}, "epoch", "mask ratio", "t")
    assert whole(ratios.axes[0].get_xticks())
