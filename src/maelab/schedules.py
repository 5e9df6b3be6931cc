"""Schedules as pure functions of the step (or epoch): training and the plots call the same code."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maelab.config import MaskConfig


def lr_at(step: int, total_steps: int, warmup_steps: int, peak_lr: float, min_lr: float = 0.0) -> float:
    """Learning rate at a 0-based iteration: linear warm-up from 0 to ``peak_lr``, then half-cosine to ``min_lr``.

    The warm-up reaches ``peak_lr`` at ``step == warmup_steps``; the cosine ends at ``min_lr`` at ``total_steps``.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    if total_steps == warmup_steps:
        return peak_lr
    progress = min((step - warmup_steps) / (total_steps - warmup_steps), 1.0)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def mask_ratio_at(mask_cfg: MaskConfig, epoch: int, step: int, total_epochs: int, steps_per_epoch: int,
                  seed: int) -> float:
    """The mask ratio requested for (epoch, step): a pure function of its arguments.

    Only the constant schedule exists so far: ``mask_cfg.ratio`` at every step.
    """
    return mask_cfg.ratio
