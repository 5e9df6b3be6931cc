import pytest
import torch

from maelab.config import load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.metrics import read_metrics
from maelab.engine.numerics import NonFiniteLossError
from maelab.engine.pretrain import pretrain, resume
from maelab.errors import UserError


def run(tmp_path, name, overrides):
    return pretrain(load_config(None, [*overrides, f"out_dir={tmp_path / name}"]))


def weights(run_dir):
    return load_checkpoint(checkpoint_path(run_dir))["model"]


def test_a_few_epochs_lower_the_loss(tmp_path, tiny):
    run_dir = run(tmp_path, "a", [*tiny, "optim.epochs=4", "train.tensorboard=false"])
    epochs = [m for m in read_metrics(run_dir) if m["kind"] == "epoch"]
    assert [m["epoch"] for m in epochs] == [0, 1, 2, 3]
    assert epochs[-1]["loss"] < 0.8 * epochs[0]["loss"]


def test_metrics_log_the_ratio_and_schedule(tmp_path, tiny):
    run_dir = run(tmp_path, "m", [*tiny, "optim.epochs=2", "mask.ratio=0.6", "train.tensorboard=false"])
    steps = [m for m in read_metrics(run_dir) if m["kind"] == "step"]
    assert [m["step"] for m in steps] == [2, 4, 6, 8]
    # 64 patches, round(64 * 0.4) = 26 visible: the encoder saw 38/64 masked
    assert {m["mask_ratio"] for m in steps} == {38 / 64}
    assert all(m["img_per_s"] > 0 and m["lr"] > 0 for m in steps)
    state = load_checkpoint(checkpoint_path(run_dir))
    assert state["step"] == 8 and state["epoch"] == 2
    assert state["config"]["mask"]["ratio"] == 0.6


def test_resume_is_bit_exact(tmp_path, tiny):
    common = [*tiny, "optim.epochs=2", "train.tensorboard=false"]
    straight = run(tmp_path, "straight", common)
    split = run(tmp_path, "split", [*common, "train.stop_after_epochs=1"])
    assert load_checkpoint(checkpoint_path(split))["step"] == 4
    resume(split, ["train.stop_after_epochs=null"])
    a, b = weights(straight), weights(split)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    losses = lambda d: [m["loss"] for m in read_metrics(d) if m["kind"] == "epoch"]  # noqa: E731
    assert losses(straight) == losses(split)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny):
    run_dir = run(tmp_path, "nan", [*tiny, "optim.epochs=3", "train.stop_after_epochs=1", "train.tensorboard=false"])
    good = weights(run_dir)
    # the 5th step still computes its loss with good weights; its lr=1e30 update makes the 6th step's loss non-finite
    with pytest.raises(NonFiniteLossError, match=r"non-finite at step 6: the run stopped; its last good checkpoint, "
                                                 r".*last\.pt \(step 4, finite weights\), is kept"):
        resume(run_dir, ["train.stop_after_epochs=null", "optim.lr=1e30"])
    kept = load_checkpoint(checkpoint_path(run_dir))
    assert kept["step"] == 4
    assert all(torch.equal(good[k], kept["model"][k]) for k in good)


def test_out_dir_holding_a_run_is_refused_unless_overwrite(tmp_path, tiny):
    args = [*tiny, "optim.epochs=1", "train.tensorboard=false"]
    run_dir = run(tmp_path, "r", args)
    before = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(UserError, match="already holds a run"):
        run(tmp_path, "r", args)
    assert (run_dir / "metrics.jsonl").read_text() == before
    run(tmp_path, "r", [*args, "overwrite=true"])
    assert len(read_metrics(run_dir)) == len(before.splitlines())


def test_resume_with_another_model_is_refused(tmp_path, tiny):
    run_dir = run(tmp_path, "x", [*tiny, "optim.epochs=1", "train.tensorboard=false"])
    with pytest.raises(UserError, match="different model config"):
        resume(run_dir, ["model.depth=3"])


def test_resume_finds_cifar10_where_the_run_found_it(tmp_path, tiny, cifar_dir, monkeypatch):
    monkeypatch.setenv("MAELAB_DATA_DIR", str(cifar_dir))
    args = [*tiny, "data.name=cifar10", "data.limit_train=128", "data.limit_test=20", "optim.epochs=2",
            "train.stop_after_epochs=1", "train.tensorboard=false"]
    run_dir = run(tmp_path, "c", args)
    monkeypatch.delenv("MAELAB_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no cache there, and data.download would fail
    resume(run_dir, ["train.stop_after_epochs=null", "data.download=false"])
    assert load_checkpoint(checkpoint_path(run_dir))["step"] == 4


def test_a_config_asking_for_a_monitor_nobody_provides_is_refused_before_any_file_is_written(tmp_path, tiny):
    with pytest.raises(UserError, match=r"eval.knn_every=2 asks for the k-NN monitor.*monitors=maelab.eval"):
        run(tmp_path, "k", [*tiny, "optim.epochs=3", "eval.knn_every=2"])
    assert not (tmp_path / "k").exists()


def test_epoch_hooks_add_their_fields_to_the_epoch_records(tmp_path, tiny):
    class Counting:
        setting = "test.counting"

        def __call__(self, run, epoch):
            return {"seen_epoch": epoch, "seen_step": run.step}

    run_dir = pretrain(load_config(None, [*tiny, "optim.epochs=2", "train.tensorboard=false",
                                          f"out_dir={tmp_path / 'h'}"]), monitors=lambda cfg: [Counting()])
    epochs = [m for m in read_metrics(run_dir) if m["kind"] == "epoch"]
    assert [(m["seen_epoch"], m["seen_step"]) for m in epochs] == [(0, 4), (1, 8)]


def test_save_every_writes_checkpoints_every_n_epochs_and_at_the_end(tmp_path, tiny, monkeypatch):
    import maelab.engine.checkpoint_writer as writer

    saved_at = []
    real_save = writer.save_checkpoint
    monkeypatch.setattr(writer, "save_checkpoint", lambda state, path: (saved_at.append(state["epoch"]),
                                                                         real_save(state, path)))
    run_dir = run(tmp_path, "s", [*tiny, "optim.epochs=5", "train.save_every=2", "train.tensorboard=false"])
    assert saved_at == [2, 4, 5]
    assert load_checkpoint(checkpoint_path(run_dir))["epoch"] == 5


def test_save_every_must_be_positive(tiny):
    with pytest.raises(UserError, match="train.save_every"):
        load_config(None, [*tiny, "train.save_every=0"])
