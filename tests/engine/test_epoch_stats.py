"""An epoch's losses kept on the device: one copy per step, read at log steps, the rest with the logs in one
transfer at the epoch's end."""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from maelab.engine.epoch_stats import EpochStats


class CountOps(TorchDispatchMode):
    """The aten ops a block dispatches (what would be kernel launches on a GPU)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_a_steps_bookkeeping_is_one_copy_into_its_slot():
    stats, loss = EpochStats(torch.device("cpu"), steps=4), torch.tensor(0.5)
    with CountOps() as counted:
        stats.add(2, loss)
    # two views and one kernel: no isfinite, where or running sums per step (about 10 kernels before)
    assert counted.ops == ["aten.detach.default", "aten.select.int", "aten.copy_.default"]
    assert stats.losses.tolist() == [0.0, 0.0, 0.5, 0.0]


def test_the_losses_are_read_in_step_order_and_averaged_over_the_finite_ones():
    stats = EpochStats(torch.device("cpu"), steps=5, start=1)  # a resumed epoch: its first step was done before
    for index, loss in zip(range(1, 5), [1.0, math.nan, 3.0, 5.0], strict=True):
        stats.add(index, torch.tensor(loss))
    assert stats.read(3) == ([1.0, pytest.approx(math.nan, nan_ok=True)], [])
    assert stats.read(3) == ([], [])  # nothing new
    losses, logs, flags = stats.finish(5)
    assert losses == [3.0, 5.0] and logs == {} and flags == []
    assert stats.mean_loss() == pytest.approx(3.0)  # (1 + 3 + 5) / 3: the skipped step's NaN left out


def test_the_epochs_end_brings_the_remaining_losses_the_log_means_and_the_flags_in_one_transfer(monkeypatch):
    stats = EpochStats(torch.device("cpu"), steps=3)
    for index in range(3):
        stats.add(index, torch.tensor(float(index)))
        stats.add_logs({"d_loss": torch.tensor(2.0 * index), "g_adv": torch.tensor(1.0)})
    transfers = []
    real = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: transfers.append(self.shape) or real(self))
    losses, logs, flags = stats.finish(3, [torch.tensor(-1), torch.tensor(2**40 + 1)])  # e.g. the NaN policy's
    assert len(transfers) == 1
    assert losses == [0.0, 1.0, 2.0] and logs == {"d_loss": pytest.approx(2.0), "g_adv": pytest.approx(1.0)}
    assert flags == [-1, 2**40 + 1]  # step numbers read exactly (float64)


def test_an_epoch_where_every_step_was_skipped_has_no_mean():
    stats = EpochStats(torch.device("cpu"), steps=2)
    for index in range(2):
        stats.add(index, torch.tensor(math.inf))
    stats.finish(2)
    assert stats.mean_loss() is None


@pytest.mark.parametrize("on_nan", ["stop", "skip"])
def test_an_epoch_reads_the_device_once_per_read_point_losses_and_nan_flags_together(tmp_path, tiny, monkeypatch,
                                                                                      on_nan):
    from maelab.config import load_config
    from maelab.engine.pretrain import run_epoch
    from maelab.engine.run import build_run

    # the CPU reads after every step (a GPU only at log steps, here never: log_every > the epoch) and at the end
    run = build_run(load_config(None, [*tiny, "train.tensorboard=false", "train.log_every=100",
                                       f"train.on_nan={on_nan}"]), tmp_path / "run")
    reads = []
    for name in ("item", "tolist"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, *a, real=real, name=name: reads.append(name) or real(self, *a))
    run_epoch(run, 0, logger=None, bar=None)
    skip_counts = 1 if on_nan == "skip" else 0  # the epoch's count of skipped steps, for its record (skip only)
    assert len(reads) == run.steps_per_epoch + 1 + skip_counts  # the losses and the policy's flags: one read
