"""Add-ons of the pretraining step: what the step calls, so that an extra loss term or a second model (the GAN,
an EMA teacher) is written as an add-on, not as an edit of the step.

An add-on has ``active(epoch)``, ``frozen()`` (a context in which its own parameters take no gradient from the MAE's
objective), ``objective_term(out, loss_scale)`` (a 0-d tensor added to the MAE's loss, inside the step's
autocast), ``after_step(out, skipped)`` (after the MAE's optimizer step; ``skipped`` is the 0-d bool of
``train.on_nan=skip``, None otherwise) and ``step_logs()`` (detached 0-d device tensors, averaged over ranks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from torch import Tensor

from maelab.masking import Mask


@dataclass(frozen=True)
class StepOutput:
    """What the MAE computed in one step, for the add-ons: the normalised batch imgs [N, 3, H, W], the loss
    (0-d), the prediction pred [N, M, P] at the masked patches and the drawn mask (:class:`maelab.masking.Mask`;
    ``model.reconstruct(imgs, pred, mask)`` is the reconstructed image)."""

    model: Any  # the MAE (not its DDP or compiled wrapper)
    imgs: Tensor
    loss: Tensor
    pred: Tensor
    mask: Mask


class AddOn(Protocol):
    def active(self, epoch: int) -> bool: ...

    def frozen(self) -> contextlib.AbstractContextManager: ...

    def objective_term(self, out: StepOutput, loss_scale: Tensor | float) -> Tensor: ...

    def after_step(self, out: StepOutput, skipped: Optional[Tensor]) -> None: ...

    def step_logs(self) -> dict[str, Tensor]: ...


@contextlib.contextmanager
def all_frozen(addons: Sequence[AddOn]) -> Iterator[None]:
    """Every add-on's own parameters frozen for the block."""
    with contextlib.ExitStack() as stack:
        for addon in addons:
            stack.enter_context(addon.frozen())
        yield
