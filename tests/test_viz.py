from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.loading import load_run
from maelab.engine.metrics import read_metrics
from maelab.engine.pretrain import pretrain
from maelab.masking import effective_ratio
from maelab.schedules import lr_at, mask_ratio_at
from maelab.viz import (
    curves_figure,
    lr_schedule_figure,
    mask_schedule_figure,
    run_figures,
    sample_indices,
    schedule_series,
)
from maelab.viz.plots import DPI, EFFECTIVE_LABEL, LOGGED_LABEL, LR_LABEL, REQUESTED_LABEL, grid_size
from maelab.viz.samples import MASK_FILL
from tests.conftest import TINY

FEW = ["--images", "4", "--ratios", "0.5,0.9"]  # 4 images, 2 ratios: small figures, fast tests


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny runs: a (2 epochs), b (another seed, 1 epoch), p8 (patch 8: incompatible with a; 1 step)."""
    root = tmp_path_factory.mktemp("viz")
    common = [*TINY, "optim.epochs=2", "train.tensorboard=false"]
    make = lambda name, extra: pretrain(load_config(None, [*common, *extra, f"out_dir={root / name}"]))  # noqa: E731
    return {"a": make("a", []), "b": make("b", ["train.seed=1", "optim.epochs=1"]),
            "p8": make("p8", ["model.patch_size=8", "optim.epochs=1", "data.synthetic_train=64",
                              "data.synthetic_test=16"])}


def png_size(path):
    """(width, height) from the PNG header; PIL checks that the file is a whole, valid PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    with Image.open(path) as img:
        img.verify()
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def assert_size(path, inches):
    width, height = png_size(path)
    assert abs(width - inches[0] * DPI) <= 1 and abs(height - inches[1] * DPI) <= 1, (path.name, width, height)


def capture_figures(monkeypatch):
    """Record every (figure, path) that write_figures / write_compare save."""
    from maelab.viz import compare

    saved = {}
    original = run_figures._save

    def save(fig, path):
        saved[path.name] = fig
        return original(fig, path)

    monkeypatch.setattr(run_figures, "_save", save)
    monkeypatch.setattr(compare, "_save", save)
    return saved


def grid_image(fig):
    """The mosaic drawn by image_grid: [rows*(H+gap)-gap, cols*(W+gap)-gap, 3]."""
    return np.asarray(fig.axes[0].get_images()[0].get_array())


def line(fig, label):
    found = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, label
    return found[0]


def test_figures_command_writes_every_png(runs, capsys):
    assert main(["figures", str(runs["a"]), *FEW]) == 0
    printed = capsys.readouterr().out.split()
    folder = runs["a"] / "figures"
    assert printed == [str(folder / name) for name in run_figures.FIGURE_NAMES]
    assert_size(folder / "masked_inputs.png", grid_size(2, 4))
    assert_size(folder / "reconstructions.png", grid_size(3, 4))
    assert_size(folder / "mask_ratios.png", grid_size(1 + 2 * 2, 4))  # original + (masked, recon) per ratio
    assert_size(folder / "attention.png", grid_size(2 + 2, 4, colorbar=True))  # original, mean, a row per head (2)
    assert_size(folder / "lr_schedule.png", (7.0, 4.2))
    assert_size(folder / "mask_schedule.png", (7.0, 4.2))
    assert_size(folder / "curves.png", (11.0, 4.15))  # loss and mask ratio: no panels for what was not logged


def test_figures_draw_the_run_schedules_and_fixed_images(runs, tmp_path, monkeypatch):
    saved = capture_figures(monkeypatch)
    run_dir = runs["a"]
    out = tmp_path / "elsewhere"
    paths = run_figures.write_figures(run_dir, checkpoint=run_dir / "checkpoints" / "last.pt", out=out, n_images=4,
                                      ratios=(0.5,))
    assert all(p.parent == out and p.is_file() for p in paths)
    # 256 images / batch 64 = 4 steps per epoch, 2 epochs, warm-up round(0.1 * 8) = 1 step, peak 2e-3
    lr_line = line(saved["lr_schedule.png"], LR_LABEL)
    assert list(lr_line.get_xdata()) == list(range(8))
    assert list(lr_line.get_ydata()) == [lr_at(s, 8, 1, 2e-3) for s in range(8)]
    # what training logged lies on the drawn curve: the plot cannot drift from the training loop
    logged = line(saved["lr_schedule.png"], LOGGED_LABEL)
    lrs = [m["lr"] for m in read_metrics(run_dir) if m["kind"] == "step"]
    assert list(logged.get_ydata()) == lrs and len(lrs) == 4
    xs, ys = logged.get_data()
    assert list(ys) == pytest.approx([lr_at(int(x), 8, 1, 2e-3) for x in xs], rel=1e-12)
    assert set(line(saved["mask_schedule.png"], EFFECTIVE_LABEL).get_ydata()) == {48 / 64}
    # the original row shows the class-balanced test images, the masked row hides 48 of 64 patches in grey
    data = load_run(run_dir, device="cpu").dataset()
    index = sample_indices(data.y_test, 4, run_figures.FIGURE_SEED)
    mosaic = grid_image(saved["masked_inputs.png"])
    first = data.x_test[index[0]].float().numpy() / 255
    assert np.allclose(mosaic[:32, :32], first, atol=1e-6)
    masked = mosaic[34:66, :32]  # row 1, column 0 (2-pixel gaps)
    grey = [np.all(masked[y:y + 4, x:x + 4] == MASK_FILL) for y in range(0, 32, 4) for x in range(0, 32, 4)]
    assert sum(grey) == 48


def test_mask_schedule_shows_the_ratio_the_encoder_saw():
    cfg = load_config(None, [*TINY, "optim.epochs=4", "mask.schedule=linear", "mask.min=0", "mask.max=1"])
    sched = schedule_series(cfg, num_train=256, num_patches=64)
    fig = mask_schedule_figure(sched.steps, sched.requested, sched.effective, steps_per_epoch=4)
    requested = [mask_ratio_at(cfg.mask, s // 4, s, 4, 4, cfg.train.seed) for s in range(16)]
    assert list(line(fig, REQUESTED_LABEL).get_ydata()) == requested
    assert list(line(fig, EFFECTIVE_LABEL).get_ydata()) == [effective_ratio(64, r) for r in requested]
    assert line(fig, EFFECTIVE_LABEL).get_ydata()[0] == 1 / 64  # ratio 0 is clamped: one patch masked
    # the figure shows what training used: min at the first epoch, max at the last (progress epoch / (epochs - 1));
    # ratio 1 is clamped to one visible patch
    assert sorted(set(requested)) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert line(fig, EFFECTIVE_LABEL).get_ydata()[-1] == 63 / 64


def test_long_schedules_are_drawn_at_exact_points():
    cfg = load_config(None, [*TINY, "optim.epochs=100", "optim.batch_size=2", "optim.warmup_epochs=5"])
    sched = schedule_series(cfg, num_train=1000, num_patches=64, max_points=1000)  # 50,000 steps
    assert len(sched.steps) <= 1001 and sched.steps[0] == 0 and sched.steps[-1] == 49_999
    assert sched.lr == [lr_at(s, 50_000, 2_500, 2e-3) for s in sched.steps]
    fig = lr_schedule_figure(sched.steps, sched.lr, warmup_steps=sched.warmup_steps, steps_per_epoch=500)
    assert max(line(fig, LR_LABEL).get_ydata()) == pytest.approx(2e-3, rel=1e-3)


def test_sample_images_are_class_balanced_and_not_the_first():
    labels = torch.arange(10).repeat_interleave(50)  # grouped by class, like the CIFAR-10 test batch
    picks = sample_indices(labels, 10, seed=0)
    assert labels[picks].tolist() == list(range(10))
    assert picks.tolist() != list(range(10))
    assert torch.equal(picks, sample_indices(labels, 10, seed=0))
    assert not torch.equal(picks, sample_indices(labels, 10, seed=1))


def test_curves_show_knn_and_gan_losses_when_logged():
    records = [{"kind": "step", "epoch": 0, "step": 2, "loss": 1.0, "d_loss": 0.7, "g_adv": 0.9},
               {"kind": "epoch", "epoch": 0, "step": 4, "loss": 0.9, "mask_ratio": 0.75, "knn_top1": 31.5},
               {"kind": "epoch", "epoch": 1, "step": 8, "loss": 0.8, "mask_ratio": 0.5, "knn_top1": 35.0}]
    fig = curves_figure(records)
    assert list(line(fig, "k-NN top-1").get_ydata()) == [31.5, 35.0]
    assert list(line(fig, "discriminator loss (d_loss)").get_ydata()) == [0.7]
    assert list(line(fig, "mask ratio seen by the encoder").get_ydata()) == [0.75, 0.5]
    plain = curves_figure(records[:1] + [{k: v for k, v in r.items() if k != "knn_top1"} for r in records[1:]])
    assert not [ln for ax in plain.axes for ln in ax.get_lines() if ln.get_label() == "k-NN top-1"]
    assert "k-NN top-1 (%)" not in [ax.get_title() for ax in plain.axes]


def test_compare_draws_both_runs_on_the_same_masks(runs, monkeypatch, capsys):
    saved = capture_figures(monkeypatch)
    assert main(["figures", str(runs["a"]), str(runs["b"]), "--compare", "--images", "4"]) == 0
    path = runs["a"] / "figures" / "compare_a_vs_b.png"
    assert capsys.readouterr().out.split() == [str(path)]
    assert_size(path, grid_size(4, 4))
    mosaic = grid_image(saved["compare_a_vs_b.png"])
    masked, rec_a, rec_b = (mosaic[r * 34:r * 34 + 32] for r in (1, 2, 3))
    hidden = np.all(masked == MASK_FILL, axis=-1)
    assert 0.6 < hidden.mean() < 0.9
    assert np.allclose(rec_a[~hidden], rec_b[~hidden], atol=1e-5)  # visible patches pasted back in both
    assert np.abs(rec_a[hidden] - rec_b[hidden]).mean() > 1e-3  # two models, two predictions


def test_compare_refuses_runs_with_other_patches(runs, capsys):
    assert main(["figures", str(runs["a"]), str(runs["p8"]), "--compare"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "patch 4" in err[0] and "patch 8" in err[0]
    assert not (runs["a"] / "figures" / "compare_a_vs_p8.png").exists()


def test_missing_or_corrupt_checkpoint_is_one_clear_error(runs, tmp_path, capsys):
    assert main(["figures", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]
    (tmp_path / "empty").mkdir()
    assert main(["figures", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint" in err[0]
    broken = tmp_path / "broken"
    shutil.copytree(runs["a"], broken, ignore=shutil.ignore_patterns("figures"))
    (broken / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    assert main(["figures", str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load checkpoint" in err[0]
    assert not (broken / "figures").exists()


def test_bad_mask_ratio_is_refused_before_loading(capsys):
    assert main(["figures", "no-such-run", "--ratio", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mask ratio 1.5 is outside [0, 1]" in err[0]
    assert main(["figures", "no-such-run", "--ratios", "0.5,x"]) == 2
    assert "comma-separated" in capsys.readouterr().err


def _probe_all(top1s: list[float], optimizer: str = "sgd") -> dict:
    """A layers=all probe.json of a 2-block encoder: block1, block2, last2, then last = top1s[3]."""
    head = {"pool": "mean", "optimizer": optimizer, "lr": 0.1, "weight_decay": 0.0, "epochs": 5, "batch_size": 64,
            "train_images": 100, "test_images": 50}
    protocols = {name: {"name": name, "layers": layers, "norm": norm, "top1": t, **head} for name, layers, norm, t in
                 zip(["block1", "block2", "last2", "last"], [[1], [2], [1, 2], [2]], ["raw", "raw", "raw", "final"],
                     top1s, strict=True)}
    return {"probe": {"layers": "all"}, "protocols": protocols}


def test_probe_by_depth_draws_blocks_concatenations_and_the_floor():
    from maelab.viz.probe_plots import probe_depth_figure

    fig = probe_depth_figure(_probe_all([30.0, 40.0, 45.0, 38.0]), _probe_all([20.0, 21.0, 22.0, 19.0]))
    ax = fig.axes[0]
    curves = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
    assert curves["trained: each block alone"] == ([1, 2], [30.0, 40.0])
    assert curves["random init (floor): each block alone"] == ([1, 2], [20.0, 21.0])
    assert curves["trained: last block after the final norm (38.0%)"] == ([2], [38.0])
    assert curves["trained: last2 concatenated (blocks 1-2): 45.0%"][1] == [45.0, 45.0]
    assert "DIFFERENT" not in ax.get_title()
    different = probe_depth_figure(_probe_all([30.0, 40.0, 45.0, 38.0]), _probe_all([1, 2, 3, 4], "adamw"))
    assert "DIFFERENT protocols" in different.axes[0].get_title()


def test_attention_maps_are_the_cls_rows_of_the_last_blocks_attention(runs):
    from maelab.data.normalize import Normalizer
    from maelab.viz.attention import cls_attention_maps, overlays

    run = load_run(runs["a"], device="cpu")
    data = run.dataset()
    samples = run_figures.pick_samples(data, 32, 4, run_figures.FIGURE_SEED)
    norm = Normalizer(data.mean, data.std)
    maps = cls_attention_maps(run.model, samples.original, norm)
    assert maps.shape == (4, 2, 8, 8)  # images, heads, the 8 x 8 patch grid
    with torch.no_grad():
        full = run.model.encoder.forward_attention(norm(samples.original))
    assert torch.equal(maps.flatten(2), full[:, :, 0, 1:])  # the cls query's row, patch keys only
    assert (maps.sum(dim=(-2, -1)) < 1).all() and not torch.allclose(maps[:, 0], maps[:, 1])
    drawn = overlays(samples.original, maps)
    assert len(drawn) == 2 and drawn[0].shape == (4, 32, 32, 3) and not np.allclose(drawn[0], drawn[1])


def test_variant_bars_draw_each_metrics_floor_under_its_own_name():
    from maelab.viz.ablation_plots import variant_bars_figure

    values = {"probe_top1": {"pretrained": [54.0, 55.0]}, "finetune_top1": {"pretrained": [62.0, 63.0]}}
    floors = {"probe_top1": [44.0, 44.5], "finetune_top1": [55.0, 56.0]}
    fig = variant_bars_figure(values, floors, "top-1 (%)", "t", {"finetune_top1": "same ViT from scratch"})
    lines = {line.get_label(): line.get_ydata()[0] for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"}
    assert lines == {"probe_top1: random-init floor (44.25)": 44.25,
                     "finetune_top1: same ViT from scratch (55.50)": 55.5}


def test_probe_by_depth_on_other_data_draws_the_floor_measured_on_that_data(tmp_path, monkeypatch):
    from maelab.viz import probe_plots

    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    for name, top1s in [("probe@test20", [30.0, 40.0, 45.0, 38.0]), ("probe_random_init", [20.0, 21.0, 22.0, 19.0]),
                        ("probe_random_init@test20", [10.0, 11.0, 12.0, 9.0])]:
        (eval_dir / f"{name}.json").write_text(json.dumps(_probe_all(top1s)))
    drawn = []
    real = probe_plots.probe_depth_figure
    monkeypatch.setattr(probe_plots, "probe_depth_figure", lambda t, f, title: drawn.append(f) or real(t, f, title))
    probe_plots.write_probe_by_depth(tmp_path, tmp_path / "figures", tag="test20", floor_tag="test20")
    assert drawn[0]["protocols"]["block1"]["top1"] == 10.0  # the floor on the same 20 test images, not the run's own
