"""Checkpoints off the critical path: the seconds cadence, the CPU snapshot, one background write at a time, its
errors raised in the training thread, and every end of training waiting for the write (real files and threads)."""

import functools
import itertools
import os
import signal
import threading
import time
from collections import OrderedDict

import pytest
import torch

import maelab.engine.checkpoint_writer as writer_module
import maelab.engine.pretrain as loop
from maelab.config import load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from maelab.engine.checkpoint_cadence import CheckpointCadence
from maelab.engine.checkpoint_writer import CheckpointWriter, cpu_copy, write_checkpoints
from maelab.engine.pretrain import pretrain
from maelab.engine.run import build_run
from maelab.engine.signals import RunInterrupted
from maelab.errors import ConfigError, UserError
from maelab.run_layout import RunLayout


def fake_clock(step):
    """A clock that advances ``step`` seconds each time it is read, from 0."""
    ticks = itertools.count(0, step)
    return lambda: next(ticks)


def fail(error):
    raise error


def run_cfg(tmp_path, tiny, *overrides):
    return load_config(None, [*tiny, "train.tensorboard=false", f"out_dir={tmp_path / 'run'}", *overrides])


def record_saves(monkeypatch, delay=0.0, after=None):
    """save_checkpoint in the background job, slowed by ``delay`` s (once the event ``after`` is set, when given):
    returns the log of (event, epoch, path name, thread, time) for each save's start and end."""
    log, real = [], save_checkpoint

    def save(state, path):
        log.append(("start", state["epoch"], path.name, threading.current_thread(), time.monotonic()))
        if after is not None:
            after.wait(timeout=10)
        time.sleep(delay)
        real(state, path)
        log.append(("end", state["epoch"], path.name, threading.current_thread(), time.monotonic()))

    monkeypatch.setattr(writer_module, "save_checkpoint", save)
    return log


# --- when: epochs or seconds


@pytest.mark.parametrize("seconds,expected", [(None, [10, 20]), (60, [3, 6, 9, 10, 13, 16, 19, 20])])
def test_the_seconds_cadence_writes_where_the_epoch_cadence_alone_would_not(seconds, expected):
    # 25 s per epoch: 60 s have passed at epochs 3, 6, 9 (counted from the last checkpoint, epoch 10's included)
    cadence = CheckpointCadence(save_every=10, save_every_seconds=seconds, last_epoch=20, clock=fake_clock(25))
    assert [e for e in range(1, 21) if cadence.due(e, stopping=False)] == expected


def test_the_last_epoch_and_a_stop_always_write_whatever_the_cadence():
    cadence = CheckpointCadence(save_every=100, save_every_seconds=1e9, last_epoch=5, clock=fake_clock(1))
    assert [cadence.due(e, stopping=False) for e in (1, 2, 5)] == [False, False, True]
    assert cadence.due(3, stopping=True)


def test_a_run_writes_last_pt_by_the_clock_and_keeps_epochs_by_save_every_only(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(loop, "CheckpointCadence", functools.partial(CheckpointCadence, clock=fake_clock(25)))
    saves = record_saves(monkeypatch)
    run_dir = pretrain(run_cfg(tmp_path, tiny, "optim.epochs=6", "train.save_every=4", "train.save_every_seconds=60",
                               "train.keep_checkpoints=-1"))
    # the clock reads 25, 50, 75 (due), 100 (epoch 4: due by epochs), 125, 150 (last epoch)
    assert [(e, name) for event, e, name, *_ in saves if event == "end"] == [
        (3, "last.pt"), (4, "epoch_0004.pt"), (4, "last.pt"), (6, "epoch_0006.pt"), (6, "last.pt")]
    assert list(RunLayout(run_dir).kept_checkpoints()) == [4, 6]  # epoch 3 (by the clock) is not kept


@pytest.mark.parametrize("value", ["0", "-5", "-0.5"])
def test_save_every_seconds_must_be_positive(tiny, value):
    with pytest.raises(ConfigError, match=r"train.save_every_seconds=-?0?[.\d]* is not valid: it must be > 0"):
        load_config(None, [*tiny, f"train.save_every_seconds={value}"])
    assert load_config(None, [*tiny, "train.save_every_seconds=300"]).train.save_every_seconds == 300


# --- the snapshot


def test_the_cpu_copy_is_a_snapshot_that_training_can_no_longer_change(tmp_path):
    model = OrderedDict(w=torch.zeros(4))
    model._metadata = {"": {"version": 1}}
    state = {"model": model, "optimizer": {"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [
        {"betas": (0.9, 0.95), "params": [0]}]}, "step": 3}
    path, gate = tmp_path / "last.pt", threading.Event()
    snapshot = cpu_copy(state)
    writer = CheckpointWriter()
    writer.submit(lambda: (gate.wait(timeout=10), save_checkpoint(snapshot, path)))  # written after the changes below
    state["model"]["w"].add_(1)  # the optimizer's in-place update, after the checkpoint was taken
    state["optimizer"]["state"][0]["exp_avg"].add_(1)
    gate.set()
    writer.wait()
    saved = load_checkpoint(path)
    assert torch.equal(saved["model"]["w"], torch.zeros(4))
    assert torch.equal(saved["optimizer"]["state"][0]["exp_avg"], torch.zeros(2))
    assert saved["optimizer"]["param_groups"] == state["optimizer"]["param_groups"] and saved["step"] == 3
    assert type(snapshot["model"]) is OrderedDict  # with what load_state_dict reads module versions from
    assert snapshot["model"]._metadata == {"": {"version": 1}}


def test_a_checkpoint_holds_the_weights_of_its_moment_while_training_changes_them(tmp_path, tiny, monkeypatch):
    run = build_run(run_cfg(tmp_path, tiny), tmp_path / "run")
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    gate, real = threading.Event(), save_checkpoint
    monkeypatch.setattr(writer_module, "save_checkpoint",
                        lambda state, path: (gate.wait(timeout=10), real(state, path)))
    with CheckpointWriter() as writer:
        write_checkpoints(writer, run, None)
        with torch.no_grad():
            for p in run.model.parameters():
                p.add_(1.0)
        gate.set()
    saved = load_checkpoint(checkpoint_path(run.run_dir))["model"]
    assert all(torch.equal(saved[k], before[k]) for k in before)
    now = run.model.state_dict()
    assert not any(torch.equal(now[k], before[k]) for k in before if now[k].is_floating_point())


# --- one write at a time, on a thread; its error in the training thread


def test_two_writes_never_overlap():
    log = []

    def job(name):
        log.append(("start", name, time.monotonic()))
        time.sleep(0.2)
        log.append(("end", name, time.monotonic()))

    writer = CheckpointWriter()
    writer.submit(functools.partial(job, 1))
    writer.submit(functools.partial(job, 2))  # waits for the first to finish
    writer.wait()
    assert [(event, name) for event, name, _ in log] == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    assert log[2][2] >= log[1][2]


def test_a_run_writes_in_the_background_one_checkpoint_at_a_time(tmp_path, tiny, monkeypatch):
    third_epoch_ended = threading.Event()  # epoch 1's write lasts until then, whatever the machine's speed

    def at_epoch_end(run, epoch):
        if epoch == 2:
            third_epoch_ended.set()
        return {}

    at_epoch_end.setting = "test"  # an EpochHook: the config key that would ask for it

    saves = record_saves(monkeypatch, after=third_epoch_ended)
    pretrain(run_cfg(tmp_path, tiny, "optim.epochs=3"), monitors=lambda cfg: [at_epoch_end])
    # epoch 2's checkpoint came due while epoch 1's was being written: deferred, not waited for; the last epoch's
    # always writes, after the write in flight
    assert [(event, e) for event, e, *_ in saves] == [("start", 1), ("end", 1), ("start", 3), ("end", 3)]
    assert all(thread is not threading.main_thread() for *_, thread, _ in saves)
    starts, ends = [t for event, *_, t in saves if event == "start"], [t for event, *_, t in saves if event == "end"]
    assert all(start >= end for start, end in zip(starts[1:], ends, strict=False))


def test_a_checkpoint_due_while_a_write_runs_is_deferred_to_the_next_epoch_unless_it_must_be_written():
    cadence = CheckpointCadence(save_every=1, save_every_seconds=None, last_epoch=10, clock=fake_clock(1))
    assert cadence.due(1, stopping=False)
    assert not cadence.due(2, stopping=False, busy=True)  # the write of epoch 1 still runs: training goes on
    assert cadence.due(3, stopping=False)  # the deferred one, at the next epoch's end
    every_4 = CheckpointCadence(save_every=4, save_every_seconds=None, last_epoch=10, clock=fake_clock(1))
    assert not every_4.due(4, stopping=False, busy=True) and every_4.due(5, stopping=False)  # not lost until 8
    assert not every_4.due(6, stopping=False)
    assert every_4.due(8, stopping=False, must=True, busy=True)  # a kept epoch waits for the write in flight
    assert every_4.due(9, stopping=True, busy=True) and every_4.due(10, stopping=False, busy=True)


def test_a_failed_background_write_is_raised_in_the_training_thread_and_the_next_job_does_not_run():
    error, ran = UserError("cannot write the checkpoint /x/last.pt (No space left on device)"), []
    writer = CheckpointWriter()
    writer.submit(functools.partial(fail, error))
    with pytest.raises(UserError) as raised:
        writer.submit(lambda: ran.append(1))
    assert raised.value is error and ran == []
    writer.submit(lambda: ran.append(2))  # raised once: the writer goes on
    writer.wait()
    assert ran == [2]


def test_a_failed_write_is_raised_when_the_writer_is_left_and_by_raise_failed_which_never_waits():
    writer = CheckpointWriter()
    with pytest.raises(UserError, match="disk full"), writer:
        writer.submit(functools.partial(fail, UserError("disk full")))
    gate = threading.Event()
    writer.submit(lambda: (gate.wait(timeout=10), fail(UserError("read-only"))))
    writer.raise_failed()  # the write is still in flight: no wait, no error yet
    gate.set()
    deadline = time.monotonic() + 30
    with pytest.raises(UserError, match="read-only"):
        while time.monotonic() < deadline:  # once the thread has ended, the next poll raises its error
            writer.raise_failed()
            time.sleep(0.01)


def test_a_failed_write_stops_the_run_with_that_error_and_keeps_the_previous_checkpoint(tmp_path, tiny, monkeypatch):
    real, threads = save_checkpoint, []

    def save(state, path):
        threads.append(threading.current_thread())
        if state["epoch"] == 2:
            raise UserError(f"cannot write the checkpoint {path} (No space left on device)")
        real(state, path)

    monkeypatch.setattr(writer_module, "save_checkpoint", save)
    with pytest.raises(UserError, match="No space left on device"):
        pretrain(run_cfg(tmp_path, tiny, "optim.epochs=5"))
    assert threading.main_thread() not in threads
    assert load_checkpoint(checkpoint_path(tmp_path / "run"))["epoch"] == 1


# --- every end of training waits for the write


class StopAfterEpoch1:
    """An epoch hook that ends the run after epoch 1 (0-based): by a stop signal, or by an error (or not: normal);
    ``ending`` is set then."""

    setting = "test.stop"

    def __init__(self, how, ending):
        self.how, self.ending = how, ending

    def __call__(self, run, epoch):
        if epoch == 1:
            self.ending.set()
        if epoch == 1 and self.how == "signal":
            os.kill(os.getpid(), signal.SIGTERM)  # caught by the loop: a checkpoint, then RunInterrupted
        if epoch == 1 and self.how == "error":
            raise RuntimeError("a bug in the epoch's end")
        return {}


@pytest.mark.parametrize("how,raises,last", [("normal", None, 3), ("signal", RunInterrupted, 2),
                                            ("error", RuntimeError, 1)])
def test_every_end_of_training_waits_for_the_write_in_flight(tmp_path, tiny, monkeypatch, how, raises, last):
    ending = threading.Event()
    # every write takes 0.5 s from the moment the run starts to end: the last one is in flight when training ends
    saves = record_saves(monkeypatch, delay=0.5, after=ending)
    cfg, hooks = run_cfg(tmp_path, tiny, "optim.epochs=3"), lambda cfg: [StopAfterEpoch1(how, ending)]
    if raises is None:
        pretrain(cfg, monitors=hooks)
    else:
        with pytest.raises(raises):
            pretrain(cfg, monitors=hooks)
    assert saves[-1][:2] == ("end", last)  # the write finished before pretrain returned or raised
    assert load_checkpoint(checkpoint_path(tmp_path / "run"))["epoch"] == last
