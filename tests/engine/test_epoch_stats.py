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
    assert stats.read(3) == [1.0, pytest.approx(math.nan, nan_ok=True)]
    assert stats.read(3) == []  # nothing new
    losses, logs = stats.finish(5)
    assert losses == [3.0, 5.0] and logs == {}
    assert stats.mean_loss() == pytest.approx(3.0)  # (1 + 3 + 5) / 3: the skipped step's NaN left out


def test_the_epochs_end_brings_the_remaining_losses_and_the_log_means_in_one_transfer(monkeypatch):
    stats = EpochStats(torch.device("cpu"), steps=3)
    for index in range(3):
        stats.add(index, torch.tensor(float(index)))
        stats.add_logs({"d_loss": torch.tensor(2.0 * index), "g_adv": torch.tensor(1.0)})
    transfers = []
    real = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: transfers.append(self.shape) or real(self))
    losses, logs = stats.finish(3)
    assert len(transfers) == 1
    assert losses == [0.0, 1.0, 2.0] and logs == {"d_loss": pytest.approx(2.0), "g_adv": pytest.approx(1.0)}


def test_an_epoch_where_every_step_was_skipped_has_no_mean():
    stats = EpochStats(torch.device("cpu"), steps=2)
    for index in range(2):
        stats.add(index, torch.tensor(math.inf))
    stats.finish(2)
    assert stats.mean_loss() is None
