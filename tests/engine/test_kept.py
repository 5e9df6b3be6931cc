import pytest
import torch

from maelab.config import load_config
from maelab.engine import checkpoint_writer as writer
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.kept import keeps_epoch, kept_at_end
from maelab.engine.pretrain import pretrain, resume
from maelab.errors import ConfigError
from maelab.run_layout import RunLayout


def run(tmp_path, name, overrides):
    return pretrain(load_config(None, [*overrides, "train.tensorboard=false", f"out_dir={tmp_path / name}"]))


def kept(run_dir):
    return list(RunLayout(run_dir).kept_checkpoints())


def same_weights(a, b):
    a, b = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_keep_k_holds_the_k_most_recent_epochs_and_deletes_older_ones_after_writing_the_new_one(tmp_path, tiny,
                                                                                                monkeypatch):
    events = []
    real_save, real_prune = writer.save_checkpoint, writer.prune_kept
    monkeypatch.setattr(writer, "save_checkpoint", lambda state, path: (events.append(("save", path.name)),
                                                                         real_save(state, path)))
    monkeypatch.setattr(writer, "prune_kept", lambda *a: events.append(("pruned", [p.name for p in real_prune(*a)])))
    run_dir = run(tmp_path, "k", [*tiny, "optim.epochs=4", "train.keep_checkpoints=2"])
    assert kept(run_dir) == [3, 4]
    assert sorted(p.name for p in RunLayout(run_dir).checkpoints.iterdir()) == ["epoch_0003.pt", "epoch_0004.pt",
                                                                                "last.pt"]
    assert events[:3] == [("save", "epoch_0001.pt"), ("save", "last.pt"), ("pruned", [])]
    assert events[-3:] == [("save", "epoch_0004.pt"), ("save", "last.pt"), ("pruned", ["epoch_0002.pt"])]
    layout = RunLayout(run_dir)
    assert [load_checkpoint(layout.epoch_checkpoint(e))["epoch"] for e in (3, 4)] == [3, 4]
    assert same_weights(layout.epoch_checkpoint(4), layout.checkpoint)
    assert not same_weights(layout.epoch_checkpoint(3), layout.checkpoint)


def test_keep_all_follows_save_every_and_adds_the_last_epoch(tmp_path, tiny):
    run_dir = run(tmp_path, "all", [*tiny, "optim.epochs=5", "train.save_every=2", "train.keep_checkpoints=-1"])
    assert kept(run_dir) == [2, 4, 5] == kept_at_end(5, 2, -1)
    assert load_checkpoint(checkpoint_path(run_dir))["epoch"] == 5


def test_by_default_only_last_pt_is_written(tmp_path, tiny):
    run_dir = run(tmp_path, "d", [*tiny, "optim.epochs=2"])
    assert [p.name for p in RunLayout(run_dir).checkpoints.iterdir()] == ["last.pt"]


def test_a_resume_stays_bit_exact_and_leaves_the_epochs_kept_before_it_untouched(tmp_path, tiny):
    common = [*tiny, "optim.epochs=4", "train.keep_checkpoints=-1"]
    straight = run(tmp_path, "straight", common)
    split = run(tmp_path, "split", [*common, "train.stop_after_epochs=2"])
    assert kept(split) == [1, 2]  # a stop at stop_after_epochs keeps nothing extra
    before = {e: (p.stat().st_mtime_ns, p.read_bytes()) for e, p in RunLayout(split).kept_checkpoints().items()}
    resume(split, [])
    assert kept(split) == kept(straight) == [1, 2, 3, 4]
    assert {e: (p.stat().st_mtime_ns, p.read_bytes()) for e, p in RunLayout(split).kept_checkpoints().items()
            if e in before} == before
    for e in (1, 2, 3, 4):
        assert same_weights(RunLayout(straight).epoch_checkpoint(e), RunLayout(split).epoch_checkpoint(e))
    assert same_weights(checkpoint_path(straight), checkpoint_path(split))


def test_a_stop_off_the_save_cadence_keeps_nothing_so_the_kept_epochs_do_not_depend_on_interruptions(tmp_path, tiny):
    run_dir = run(tmp_path, "i", [*tiny, "optim.epochs=5", "train.save_every=2", "train.keep_checkpoints=-1",
                                  "train.stop_after_epochs=3"])
    assert kept(run_dir) == [2] and load_checkpoint(checkpoint_path(run_dir))["epoch"] == 3
    resume(run_dir, [])
    assert kept(run_dir) == [2, 4, 5] == kept_at_end(5, 2, -1)


def test_a_resume_with_fewer_kept_prunes_only_when_it_writes_a_new_one(tmp_path, tiny):
    run_dir = run(tmp_path, "p", [*tiny, "optim.epochs=4", "train.keep_checkpoints=-1", "train.stop_after_epochs=3"])
    resume(run_dir, ["train.keep_checkpoints=0"])  # keeping none from now on deletes nothing already kept
    assert kept(run_dir) == [1, 2, 3]


@pytest.mark.parametrize("epochs,save_every,keep,expected", [
    (5, 1, 0, []), (5, 1, 2, [4, 5]), (5, 2, -1, [2, 4, 5]), (6, 3, 5, [3, 6]), (10, 4, 1, [10]),
])
def test_kept_at_end_lists_the_epochs_a_finished_run_holds(epochs, save_every, keep, expected):
    assert kept_at_end(epochs, save_every, keep) == expected
    assert all(keeps_epoch(e, epochs, save_every, keep) for e in expected)


@pytest.mark.parametrize("value", ["-2", "-10"])
def test_a_keep_checkpoints_below_minus_one_is_one_config_error_naming_the_key_and_the_choices(tiny, value):
    with pytest.raises(ConfigError, match=rf"train.keep_checkpoints={value} is not valid: use 0 .*-1 \(every one\)"):
        load_config(None, [*tiny, f"train.keep_checkpoints={value}"])
