"""Gradient accumulation (optim.accum_steps): K micro-batches give the update of one K-times batch."""

from __future__ import annotations

import pytest

from maelab.cli import main
from maelab.config import OptimConfig, load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.pretrain import pretrain
from maelab.schedules import peak_lr
from tests.conftest import TINY
from tests.engine.test_distributed import assert_close, records, weights_at_init

# 256 images: 4 optimizer steps of 64 images per epoch, augmentation on (drawn for the whole 64 either way)
RUN = [*TINY, "optim.epochs=2", "aug.preset=mae", "train.threads=1", "train.seed=3", "train.tensorboard=false"]


def test_four_micro_batches_reach_the_weights_of_one_batch_four_times_larger(tmp_path):
    big = pretrain(load_config(None, [*RUN, "optim.batch_size=64", f"out_dir={tmp_path / 'big'}"]))
    acc = pretrain(load_config(None, [*RUN, "optim.batch_size=16", "optim.accum_steps=4",
                                      f"out_dir={tmp_path / 'acc'}"]))
    state_big, state_acc = load_checkpoint(checkpoint_path(big)), load_checkpoint(checkpoint_path(acc))
    assert state_big["step"] == state_acc["step"] == 8 and state_acc["global_batch"] == 64
    assert_close(state_acc["model"], state_big["model"])
    assert sum(not state_big["model"][k].equal(v) for k, v in weights_at_init().items()) > 10  # it did train
    got, want = records(acc), records(big)
    assert [(r["kind"], r["step"]) for r in got] == [(r["kind"], r["step"]) for r in want]
    for a, b in zip(got, want, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["lr"] == b["lr"]


def test_the_learning_rate_follows_the_effective_batch():
    accumulated = OptimConfig(batch_size=16, accum_steps=4, base_lr=1e-4)
    assert peak_lr(accumulated) == pytest.approx(peak_lr(OptimConfig(batch_size=64, base_lr=1e-4)))
    assert peak_lr(accumulated, world_size=2) == pytest.approx(1e-4 * 128 / 256)


def test_accumulation_with_the_gan_is_refused_in_one_line(tmp_path, capsys):
    code = main(["pretrain", *RUN, "optim.accum_steps=2", "gan.enabled=true", f"out_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and "optim.accum_steps=2 with gan.enabled=true is not supported" in err
    assert not (tmp_path / "run").exists()


def test_zero_accumulation_steps_are_refused(capsys):
    assert main(["pretrain", *TINY, "optim.accum_steps=0"]) == 2
    assert "optim.accum_steps=0 is not valid" in capsys.readouterr().err


def test_the_figures_schedules_count_optimizer_steps_of_the_effective_batch():
    from maelab.viz.run_figures import schedule_series

    cfg = load_config(None, [*TINY, "optim.batch_size=16", "optim.accum_steps=4"])
    assert schedule_series(cfg, num_train=256, num_patches=64).steps_per_epoch == 4  # 256 / 64, as training does


def test_two_ranks_accumulating_two_micro_batches_reach_the_one_process_big_batch(tmp_path):
    from tests.engine.test_distributed import torchrun

    args = [*RUN, "optim.epochs=1", "aug.preset=mae"]
    proc = torchrun(["pretrain", *args, "optim.batch_size=16", "optim.accum_steps=2", "train.device=cpu",
                     f"out_dir={tmp_path / 'ddp'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = pretrain(load_config(None, [*args, "optim.batch_size=64", f"out_dir={tmp_path / 'one'}"]))
    ddp, big = load_checkpoint(checkpoint_path(tmp_path / "ddp")), load_checkpoint(checkpoint_path(one))
    assert ddp["step"] == big["step"] == 4 and ddp["global_batch"] == 64 and ddp["world_size"] == 2
    assert_close(ddp["model"], big["model"])
