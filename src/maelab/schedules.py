"""Schedules as pure functions of the step (or epoch): training and the plots call the same code."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor

from maelab.seeds import numpy_rng

if TYPE_CHECKING:
    from maelab.config import FinetuneConfig, MaskConfig, OptimConfig, ProbeConfig


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


def peak_lr(cfg: OptimConfig | FinetuneConfig, world_size: int = 1) -> float:
    """``cfg.lr`` if given, else MAE's rule base_lr * effective batch / 256 (effective batch = batch_size x
    accum_steps x world_size, the images of one optimizer step; He et al. 2022, appendix A.1)."""
    if cfg.lr is not None:
        return cfg.lr
    return cfg.base_lr * cfg.batch_size * getattr(cfg, "accum_steps", 1) * world_size / 256


@dataclass(frozen=True)
class LRSchedule:
    """The learning rate of every iteration: linear warm-up from 0 to ``peak``, then half-cosine to ``min_lr``
    (facebookresearch/mae's ``util/lr_sched.adjust_learning_rate``, per iteration). One object for pretraining,
    fine-tuning, the probe and the plots; ``schedule(step)`` is :func:`lr_at`.

    Raises ValueError for total_steps <= 0 or warmup_steps outside [0, total_steps].
    """

    total_steps: int
    warmup_steps: int
    peak: float
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        lr_at(0, self.total_steps, self.warmup_steps, self.peak, self.min_lr)  # the same checks

    def __call__(self, step: int) -> float:
        return lr_at(step, self.total_steps, self.warmup_steps, self.peak, self.min_lr)

    @classmethod
    def for_pretraining(cls, cfg: OptimConfig, steps_per_epoch: int, world_size: int = 1) -> LRSchedule:
        """optim.*: warm-up of optim.warmup_epochs if set, else optim.warmup_fraction of the run."""
        total = cfg.epochs * steps_per_epoch
        if cfg.warmup_epochs is not None:
            warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total)
        else:
            warmup = int(round(cfg.warmup_fraction * total))
        return cls(total, warmup, peak_lr(cfg, world_size), cfg.min_lr)

    @classmethod
    def for_finetuning(cls, cfg: FinetuneConfig, steps_per_epoch: int, world_size: int = 1) -> LRSchedule:
        """finetune.*: warm-up of finetune.warmup_fraction of the run, to min_lr."""
        total = cfg.epochs * steps_per_epoch
        return cls(total, int(round(cfg.warmup_fraction * total)), peak_lr(cfg, world_size), cfg.min_lr)

    @classmethod
    def for_probe(cls, cfg: ProbeConfig, steps_per_epoch: int) -> LRSchedule:
        """probe.*: no warm-up, cosine from probe.lr to 0 (the reference protocol of issue 13)."""
        return cls(cfg.epochs * steps_per_epoch, 0, cfg.lr)


def _check_position(epoch: int, step: int, total_epochs: int, steps_per_epoch: int) -> None:
    if total_epochs <= 0 or steps_per_epoch <= 0:
        raise ValueError(f"total_epochs={total_epochs} and steps_per_epoch={steps_per_epoch} must be > 0")
    if epoch < 0 or step < 0:
        raise ValueError(f"epoch={epoch} and step={step} must be >= 0")


def _position(mask_cfg: MaskConfig, epoch: int, step: int, total_epochs: int,
              steps_per_epoch: int) -> tuple[int, int]:
    """(position, length) of training in the schedule's unit: (epoch, epochs) or (step, total steps); the position
    is at most the last one, length - 1."""
    length = total_epochs if mask_cfg.granularity == "epoch" else total_epochs * steps_per_epoch
    return min(epoch if mask_cfg.granularity == "epoch" else step, length - 1), length


def mask_progress(mask_cfg: MaskConfig, epoch: int, step: int, total_epochs: int, steps_per_epoch: int) -> float:
    """Where training is in the schedule, in [0, 1]: 0 at the first epoch (``granularity=epoch``) or step
    (``granularity=step``), 1 at the last, ``position / (length - 1)``; 0 throughout when there is only one
    (:func:`mask_schedule_warning` says so at the start of such a run).

    The last epoch (step) trains at the schedule's end, ``mask.max``, as lightly's ``cosine_schedule`` reaches its
    end value at step ``max_steps - 1``. The report's ``epoch / total_epochs`` never reached it (0.5 to 0.9 over 3
    epochs stopped at 0.767): here it is ``mask.min=0 mask.max=(epochs - 1) / epochs``.
    """
    position, length = _position(mask_cfg, epoch, step, total_epochs, steps_per_epoch)
    return position / (length - 1) if length > 1 else 0.0


def mask_schedule_warning(mask_cfg: MaskConfig, total_epochs: int, steps_per_epoch: int) -> Optional[str]:
    """One line when the schedule cannot reach ``mask.max`` in this run: a linear or cosine schedule over a single
    epoch (step), or a step schedule with fewer epochs (steps) than stages; None otherwise."""
    if mask_cfg.schedule not in ("linear", "cosine", "step") or mask_cfg.per_sample:
        return None
    _, length = _position(mask_cfg, 0, 0, total_epochs, steps_per_epoch)
    unit = "epoch" if mask_cfg.granularity == "epoch" else "step"
    stages = mask_cfg.steps if mask_cfg.schedule == "step" else 2
    if length >= stages:
        return None
    reached = mask_ratio_at(mask_cfg, length - 1, length - 1, total_epochs, steps_per_epoch, 0)
    fix = "more epochs" if unit == "epoch" else "more steps"
    if unit == "epoch" and total_epochs * steps_per_epoch >= stages:
        fix = "mask.granularity=step (a new ratio every step) or more epochs"
    return (f"warning: mask.schedule={mask_cfg.schedule} over {length} {unit}{'s' if length > 1 else ''} never "
            f"reaches mask.max={mask_cfg.max} (its last {unit} trains at {reached:g}): use {fix}")


def mask_ratio_at(mask_cfg: MaskConfig, epoch: int, step: int, total_epochs: int, steps_per_epoch: int,
                  seed: int) -> float:
    """The mask ratio the schedule asks for at (epoch, global step): a pure function of its arguments.

    ``constant``: ``ratio``. ``random``: uniform in [min, max] from a generator seeded by (seed, epoch) or
    (seed, step). With progress ``t`` from 0 at the first epoch (step) to 1 at the last (:func:`mask_progress`),
    ``linear``: ``min + (max - min) * t``; ``cosine``: ``min + (max - min) * (1 - cos(pi t)) / 2``: both reach
    ``max`` at the last epoch (step). ``step``: ``steps`` equal stages of the epochs (steps), ``min + (max - min) *
    floor(position * steps / length) / (steps - 1)``, the last stage at ``max`` (with fewer epochs than stages it
    never comes: :func:`mask_schedule_warning`). The value is not yet rounded to whole patches:
    :func:`maelab.masking.effective_ratio` gives what the encoder sees. With ``per_sample`` this is the
    mean of the per-sample range; :func:`mask_ratios_at` gives each image's ratio.
    """
    _check_position(epoch, step, total_epochs, steps_per_epoch)
    lo, hi = mask_cfg.min, mask_cfg.max
    kind = mask_cfg.schedule
    if kind == "constant":
        return float(mask_cfg.ratio)
    if mask_cfg.per_sample:
        return 0.5 * (lo + hi)
    if kind == "random":
        index = epoch if mask_cfg.granularity == "epoch" else step
        return float(numpy_rng(seed, f"mask-{mask_cfg.granularity}", index).uniform(lo, hi))
    t = mask_progress(mask_cfg, epoch, step, total_epochs, steps_per_epoch)
    if kind == "linear":
        return lo + (hi - lo) * t
    if kind == "cosine":
        return lo + (hi - lo) * 0.5 * (1.0 - math.cos(math.pi * t))
    if kind == "step":
        position, length = _position(mask_cfg, epoch, step, total_epochs, steps_per_epoch)
        stage = min(position * mask_cfg.steps // length, mask_cfg.steps - 1)  # integers: no rounding surprises
        return lo + (hi - lo) * stage / (mask_cfg.steps - 1)
    raise ValueError(f"unknown mask schedule {kind!r}")


def mask_ratios_at(mask_cfg: MaskConfig, step: int, seed: int, batch: int) -> Tensor:
    """Per-sample ratios of one step (``mask.per_sample``): [batch] float64 on the CPU, uniform in [min, max].

    Drawn from a generator seeded by (seed, step) only, so every rank and every resumed run gets the same.
    """
    if step < 0 or batch <= 0:
        raise ValueError(f"step={step} must be >= 0 and batch={batch} > 0")
    values = numpy_rng(seed, "mask-per-sample", step).uniform(mask_cfg.min, mask_cfg.max, size=batch)
    return torch.from_numpy(values)
