"""Non-finite steps (``train.on_nan``): the guarded optimizer step and the bookkeeping of bad steps.

``stop`` (the default) steps as usual; the loop keeps each step's loss on the device and, at its next host sync
(every step on CPU, every ``train.log_every`` steps and at the epoch's end on CUDA), raises at the first NaN or
infinite one, naming its step, before the epoch's checkpoint is written, so the last good checkpoint is kept.

``skip`` leaves a step whose loss or gradients are non-finite without any effect: no weight, no Adam moment
and no optimizer step count changes. With a fused optimizer (the engine's choice on CUDA) the skip is decided
on the device through the fused kernels' ``found_inf`` input, the mechanism GradScaler uses, so there is no
host sync per step; a non-fused optimizer (CPU) is checked on the host. Under fp16 the GradScaler does the
skipping: a non-finite loss poisons the gradients so that the scaler sees an overflow (and halves its scale,
as it does for any overflow). Skipped steps are counted (``skipped_steps`` in metrics.jsonl, per logged step
and per epoch); more than ``train.max_skipped_steps`` in a row stop the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Optional

import torch
from torch import Tensor

from maelab.errors import UserError

RETRY_HINT = "lower optim.lr / optim.base_lr or set optim.grad_clip=1.0, then start again"


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 1


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler],
                   params: Iterable[Tensor], grad_clip: Optional[float], guard: Optional[Tensor] = None,
                   skip: Optional[Tensor] = None) -> Optional[Tensor]:
    """After backward: unscale (fp16), clip to ``grad_clip`` and step ``optimizer`` over ``params``.

    ``guard`` is the step's loss (0-d) under ``train.on_nan=skip``, None under ``stop``. When given, the step
    is skipped if the loss or the gradients are non-finite, or if ``skip`` (0-d bool) is True; the returned
    0-d bool device tensor says whether it was (None when not guarded).
    """
    params = [p for p in params if p.grad is not None]
    if guard is None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        _step(optimizer, scaler)
        return None
    bad = ~torch.isfinite(guard.detach())
    if skip is not None:
        bad = bad | skip
    if scaler is not None:  # the scaler checks the gradients and skips on its own; it only needs to see `bad`
        poison = torch.where(bad, torch.full_like(bad, float("nan"), dtype=torch.float32),
                             torch.ones_like(bad, dtype=torch.float32))
        for p in params:
            p.grad.mul_(poison)
        scaler.unscale_(optimizer)
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        _step(optimizer, scaler)
        return bad
    # the total norm (max_norm=inf scales every gradient by exactly 1.0 when no clipping is asked for)
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip is not None else float("inf"))
    bad = bad | ~torch.isfinite(norm)
    if optimizer.defaults.get("fused"):  # decided on the device: the fused kernel skips when found_inf != 0
        optimizer.found_inf = bad.float()
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not bool(bad):  # host sync: non-fused optimizers (the engine uses them on CPU only)
        optimizer.step()
    return bad


class Updater:
    """The MAE's optimizer step in one object: the learning rate, backward (scaled under fp16), clipping
    (``optim.grad_clip``) and what ``train.on_nan`` does with a non-finite step (:class:`NanPolicy`)."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler],
                 params: Iterable[Tensor], grad_clip: Optional[float], nan: NanPolicy) -> None:
        self.optimizer, self.scaler, self.nan, self.grad_clip = optimizer, scaler, nan, grad_clip
        self.params = list(params)

    def loss_scale(self, device: torch.device) -> Tensor | float:
        """The fp16 loss scale as a 0-d tensor (1.0 without a scaler): what an add-on's gradients are scaled by."""
        return self.scaler.scale(torch.ones((), device=device)) if self.scaler is not None else 1.0

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, objective: Tensor) -> None:
        """Add the gradients of ``objective`` (0-d; scaled under fp16) to the parameters' (accumulation)."""
        (self.scaler.scale(objective) if self.scaler is not None else objective).backward()

    def apply(self, lr: float, objective: Tensor) -> Optional[Tensor]:
        """Step at ``lr`` with the gradients summed so far (:meth:`zero_grad`, then :meth:`backward` once per
        micro-batch); ``objective``: the step's whole objective, which ``train.on_nan=skip`` checks. Returns whether
        the step was skipped (a 0-d bool device tensor under ``train.on_nan=skip``, None otherwise)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return optimizer_step(self.optimizer, self.scaler, self.params, self.grad_clip, self.nan.guard(objective))


def _step(optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler]) -> None:
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


class NanPolicy:
    """What ``train.on_nan`` does with bad steps. stop: the losses are checked where the loop reads them (at its host
    syncs, :meth:`check`); skip: the skipped steps are counted on the device (no host sync until :meth:`check`)."""

    def __init__(self, on_nan: str, max_skipped: int, device: torch.device) -> None:
        self.skip = on_nan == "skip"
        self.max_skipped = max_skipped
        zero = torch.zeros((), device=device, dtype=torch.int64)
        self.since_log, self.in_epoch = zero.clone(), zero.clone()  # skip: skipped steps
        self.streak, self.longest, self.longest_end = zero.clone(), zero.clone(), zero.clone()

    def guard(self, loss: Tensor) -> Optional[Tensor]:
        """The ``guard`` argument of :func:`optimizer_step`: the loss under skip, None under stop."""
        return loss if self.skip else None

    def add(self, loss: Tensor, skipped: Optional[Tensor], step: int) -> None:
        """Record step ``step``: whether :func:`optimizer_step` skipped it (skip; None under stop, where the loss
        itself is checked when read: :meth:`check`)."""
        if skipped is None:
            return
        count = skipped.long()
        self.since_log += count
        self.in_epoch += count
        self.streak = (self.streak + 1) * count  # back to 0 at a step that was not skipped
        longer = self.streak > self.longest
        self.longest = torch.where(longer, self.streak, self.longest)
        self.longest_end = torch.where(longer, torch.full_like(self.longest_end, step), self.longest_end)

    def check(self, losses: Sequence[float] = (), first_step: int = 0) -> None:
        """Raise if the run must stop. stop: at the first non-finite value of ``losses`` (the losses of steps
        ``first_step``, ``first_step + 1``...); skip: at too many skipped steps in a row (a host sync)."""
        if not self.skip:
            bad = next((i for i, value in enumerate(losses) if not math.isfinite(value)), None)
            if bad is not None:
                raise NonFiniteLossError(f"the loss became non-finite at step {first_step + bad}: the run stopped and "
                                         f"its last good checkpoint is kept; {RETRY_HINT}")
            return
        longest, end = (int(v) for v in torch.stack([self.longest, self.longest_end]).tolist())
        if longest > self.max_skipped:
            raise NonFiniteLossError(
                f"{longest} steps in a row (steps {end - longest + 1} to {end}) had a non-finite loss or gradients "
                f"and were skipped, more than train.max_skipped_steps={self.max_skipped}: the run stopped and its "
                f"last good checkpoint is kept; {RETRY_HINT}"
            )

    def log_fields(self) -> dict[str, int]:
        """Host sync (skip only): the steps skipped since the last call, for a step record."""
        return self._take("since_log")

    def epoch_fields(self) -> dict[str, int]:
        """Host sync (skip only): the steps skipped since the last call, for an epoch record."""
        return self._take("in_epoch")

    def _take(self, name: str) -> dict[str, int]:
        if not self.skip:
            return {}
        counter = getattr(self, name)
        value = int(counter.item())
        counter.zero_()
        return {"skipped_steps": value}
