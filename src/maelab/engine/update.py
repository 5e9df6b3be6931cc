"""The MAE's optimizer update on one screen: :class:`Updater` (lr, backward, then one update path chosen when it is
built). The update paths themselves, one function each, are :mod:`maelab.update_paths`' (below the engine: the
add-ons step their own optimizers through them too).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor

from maelab.update_paths import Update, bad_step, select_update, with_grads

if TYPE_CHECKING:
    from maelab.engine.numerics import NanPolicy


class Updater:
    """The MAE's optimizer step in one object: the learning rate, backward (scaled under fp16), clipping
    (``optim.grad_clip``) and what ``train.on_nan`` does with a non-finite step (:class:`NanPolicy`).
    The update path (:func:`select_update`) is chosen once, here."""

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler],
                 params: Iterable[Tensor], grad_clip: Optional[float], nan: NanPolicy) -> None:
        self.optimizer, self.scaler, self.nan, self.grad_clip = optimizer, scaler, nan, grad_clip
        self.params = list(params)
        self.update: Update = select_update(optimizer, scaler, guarded=nan.skip, watch=not nan.skip)

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
        bad = bad_step(self.nan.guard(objective))
        flag = self.update(self.optimizer, self.scaler, with_grads(self.params), self.grad_clip, bad)
        if bad is None:  # stop: the step was taken; its gradients' flag waits for NanPolicy.add
            self.nan.watch(flag)
            return None
        return flag
