"""A resume that would train nothing, or whose settings contradict its checkpoint, says why and what to do,
and changes no file; train.stop_after_epochs belongs to one invocation, not to the run."""

import pytest
import torch
import yaml

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.metrics import read_metrics
from maelab.engine.pretrain import pretrain, resume
from maelab.engine.resume_checks import NothingToTrain
from maelab.errors import UserError
from tests.conftest import TINY

COMMON = [*TINY, "train.tensorboard=false"]


def files(run_dir):
    return {p: p.read_bytes() for p in (run_dir / "config.yaml", run_dir / "metrics.jsonl", checkpoint_path(run_dir))}


def epochs_logged(run_dir):
    return [m["epoch"] for m in read_metrics(run_dir) if m["kind"] == "epoch"]


@pytest.fixture
def stopped(tmp_path):
    """A 3-epoch run stopped after its first epoch."""
    return pretrain(load_config(None, [*COMMON, "optim.epochs=3", "train.stop_after_epochs=1",
                                       f"out_dir={tmp_path / 'run'}"]))


def test_stop_after_epochs_is_not_kept_so_a_plain_resume_trains_to_the_end(stopped):
    assert yaml.safe_load((stopped / "config.yaml").read_text())["train"]["stop_after_epochs"] is None
    assert load_checkpoint(checkpoint_path(stopped))["config"]["train"]["stop_after_epochs"] is None
    resume(stopped, [])
    assert epochs_logged(stopped) == [0, 1, 2]


def test_a_run_saved_with_stop_after_epochs_by_an_older_maelab_resumes_to_the_end(stopped):
    state = load_checkpoint(checkpoint_path(stopped))
    state["config"]["train"]["stop_after_epochs"] = 1
    torch.save(state, checkpoint_path(stopped))
    resume(stopped, [])
    assert epochs_logged(stopped) == [0, 1, 2]


def test_a_stop_at_or_before_the_trained_epochs_is_refused_and_writes_nothing(stopped, capsys):
    before = files(stopped)
    assert main(["pretrain", "--resume", str(stopped), "train.stop_after_epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "has trained 1 epochs (4 steps): train.stop_after_epochs=1 stops it before its next step" in err
    assert files(stopped) == before


def test_resuming_a_finished_run_says_how_to_extend_it(stopped, capsys):
    resume(stopped, [])
    before = files(stopped)
    capsys.readouterr()
    assert main(["pretrain", "--resume", str(stopped)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "all of its optim.epochs=3: nothing to train" in err and "optim.epochs=N with N > 3" in err
    assert files(stopped) == before
    with pytest.raises(NothingToTrain):
        resume(stopped, [])


def test_fewer_epochs_than_already_trained_are_refused_so_config_never_contradicts_the_checkpoint(stopped):
    resume(stopped, ["optim.epochs=3", "train.stop_after_epochs=2"])
    before = files(stopped)
    with pytest.raises(UserError, match=r"has trained 2 epochs .* optim.epochs=1 would end it before that"):
        resume(stopped, ["optim.epochs=1"])
    assert files(stopped) == before
    assert yaml.safe_load((stopped / "config.yaml").read_text())["optim"]["epochs"] == 3


def test_extending_a_finished_run_says_the_lr_schedule_restarts_with_both_values(tmp_path, tiny, capsys):
    from maelab.schedules import LRSchedule

    run_dir = pretrain(load_config(None, [*tiny, "optim.epochs=2", f"out_dir={tmp_path / 'r'}"]))
    state = load_checkpoint(checkpoint_path(run_dir))
    capsys.readouterr()
    resume(run_dir, ["optim.epochs=4"])
    err = capsys.readouterr().err
    saved, step = load_config(None, [], base=state["config"]).optim, int(state["step"])  # 8 steps: 4 an epoch
    old = LRSchedule.for_pretraining(saved, 4)
    new = LRSchedule.for_pretraining(load_config(None, [*tiny, "optim.epochs=4"]).optim, 4)
    assert (f"the lr schedule changed with this resume (optim.epochs 2 -> 4: 8 -> 16 steps, warm-up "
            f"{old.warmup_steps} -> {new.warmup_steps}): the lr goes from {old(step):.3g} to {new(step):.3g} at step "
            f"{step}") in err
    capsys.readouterr()
    resume(run_dir, ["optim.epochs=5"])  # each change is said; a resume that keeps the schedule says nothing
    assert "optim.epochs 4 -> 5" in capsys.readouterr().err
    stopped = pretrain(load_config(None, [*tiny, "optim.epochs=2", "train.stop_after_epochs=1",
                                          f"out_dir={tmp_path / 's'}"]))
    capsys.readouterr()
    resume(stopped, [])
    assert "the lr schedule changed" not in capsys.readouterr().err


def test_fewer_epochs_than_trained_are_named_before_a_late_gan_start_they_also_move_past_the_end(tmp_path):
    run = pretrain(load_config(None, [*COMMON, "optim.epochs=3", "train.stop_after_epochs=2", "gan.enabled=true",
                                      "gan.start_epoch=1", f"out_dir={tmp_path / 'run'}"]))
    before = files(run)
    with pytest.raises(UserError, match=r"has trained 2 epochs .* optim.epochs=1 would end it before that"):
        resume(run, ["optim.epochs=1"])  # gan.start_epoch=1 is past the end too: the cause is the epochs
    with pytest.raises(UserError, match=r"gan.start_epoch=3 is after the last epoch"):
        resume(run, ["optim.epochs=3", "gan.start_epoch=3"])  # a GAN start that is the whole problem is named
    assert files(run) == before
