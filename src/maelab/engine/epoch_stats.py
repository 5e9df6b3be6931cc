"""An epoch's losses and add-on logs, kept on the device: each step writes its loss into a preallocated slot (one copy,
no host sync), and the host reads the new slots at log steps and once at the epoch's end, where one transfer brings
the remaining losses and the add-ons' sums together."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor


class EpochStats:
    """The losses of steps ``start`` .. ``steps - 1`` of an epoch (slot = the step's index in the epoch) and the sums
    of the add-ons' logs (the GAN phases'), on ``device``. ``first_step``: the run's step number of slot 0."""

    def __init__(self, device: torch.device, steps: int, start: int = 0, first_step: int = 0) -> None:
        self.losses = torch.zeros(steps, device=device)  # float32: the loss's dtype
        self.first_step = first_step
        self.read_upto = start  # slots below this one have been read into self.values
        self.values: list[float] = []  # the losses read so far, in step order
        self.log_sums: dict[str, Tensor] = {}
        self.log_counts: dict[str, int] = {}

    def add(self, index: int, loss: Tensor) -> None:
        """Write step ``index``'s loss (0-d device tensor) into its slot: one copy kernel, no sync."""
        self.losses[index] = loss.detach()

    def add_logs(self, logs: dict[str, Tensor]) -> None:
        """Add a step's add-on logs (0-d device tensors) to the epoch's sums."""
        for key, value in logs.items():
            self.log_sums[key] = self.log_sums.get(key, 0.0) + value.double()
            self.log_counts[key] = self.log_counts.get(key, 0) + 1

    @property
    def unread_step(self) -> int:
        """The run's step number of the first loss not read yet (what :meth:`read` and :meth:`finish` return next)."""
        return self.first_step + self.read_upto

    def read(self, upto: int, flags: Sequence[Tensor] = ()) -> tuple[list[float], list[float]]:
        """Host sync: the losses of the slots not read yet below ``upto``, as floats (also kept in :attr:`values`),
        and ``flags`` (0-d device tensors: the NaN policy's, :meth:`NanPolicy.flags`) read in the same transfer.
        Returns (the new losses, the flags' values)."""
        losses, _, read_flags = self._transfer(upto, [], flags)
        return losses, read_flags

    def finish(self, upto: int, flags: Sequence[Tensor] = ()) -> tuple[list[float], dict[str, float], list[float]]:
        """One host sync at the epoch's end: the losses not read yet below ``upto``, each log's mean over the steps
        that logged it, and ``flags``. Returns (the new losses, the log means, the flags' values)."""
        logs = [self.log_sums[k] / self.log_counts[k] for k in self.log_sums]
        losses, means, read_flags = self._transfer(upto, logs, flags)
        return losses, dict(zip(self.log_sums, means, strict=True)), read_flags

    def _transfer(self, upto: int, logs: list[Tensor], flags: Sequence[Tensor]) -> tuple[list[float], ...]:
        """One device-to-host copy of the new losses, ``logs`` and ``flags`` (as float64: exact for step numbers)."""
        tail = [v.double().reshape(1) for v in (*logs, *flags)]
        both = torch.cat([self.losses[self.read_upto:upto].double(), *tail]).tolist()
        split = len(both) - len(tail)
        new = both[:split]
        self.read_upto = max(self.read_upto, upto)
        self.values.extend(new)
        return new, both[split:split + len(logs)], both[split + len(logs):]

    def mean_loss(self) -> Optional[float]:
        """The mean of the finite losses read so far (a non-finite one was a skipped step under
        ``train.on_nan=skip``); None when there is none."""
        finite = [v for v in self.values if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else None


def host_floats(logs: dict[str, Tensor]) -> dict[str, float]:
    """0-d device tensors as floats, in one host sync."""
    if not logs:
        return {}
    values = torch.stack([v.detach().double() for v in logs.values()]).tolist()
    return dict(zip(logs, values, strict=True))
