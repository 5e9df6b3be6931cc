"""What a resume may do: refuse one that would train nothing, or whose settings contradict its checkpoint,
before anything is written."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from maelab.config import Config, load_config
from maelab.errors import UserError
from maelab.schedules import LRSchedule


class NothingToTrain(UserError):
    """A resume whose settings leave no step to train (the run has finished, or stops before its next step)."""


def check_trains(run_dir: Path, state: dict[str, Any], cfg: Config) -> None:
    """Refuse a resume that would train nothing, or whose optim.epochs is below what the checkpoint has trained
    (config.yaml would contradict it), before anything is written."""
    step, spe = int(state["step"]), int(state.get("steps_per_epoch") or 1)
    trained = step / spe
    done = f"{run_dir} has trained {trained:g} epochs ({step} steps)"
    extend = f"maelab pretrain --resume {run_dir} optim.epochs=N with N > {math.ceil(trained)}"
    if cfg.optim.epochs < trained:
        raise UserError(f"{done}: optim.epochs={cfg.optim.epochs} would end it before that; give optim.epochs of at "
                        f"least {math.ceil(trained)}")
    if cfg.optim.epochs == trained:
        raise NothingToTrain(f"{done}, all of its optim.epochs={cfg.optim.epochs}: nothing to train; to train "
                             f"longer: {extend}")
    stop = cfg.train.stop_after_epochs
    if stop is not None and stop <= trained:
        raise NothingToTrain(f"{done}: train.stop_after_epochs={stop} stops it before its next step; give a larger "
                             f"value, or drop it to train to optim.epochs={cfg.optim.epochs}")


def schedule_change_note(state: dict[str, Any], cfg: Config, steps_per_epoch: int, world_size: int) -> Optional[str]:
    """One line when a resume changes optim.epochs (or another setting of the lr schedule): the warm-up and the
    cosine are functions of the whole run (facebookresearch/mae's and timm's too), so the lr of the next step jumps
    from the old schedule's to the new one's; said with both values. None when the schedule is unchanged."""
    saved = load_config(None, [], base=state["config"]).optim
    step = int(state["step"])
    old = LRSchedule.for_pretraining(saved, steps_per_epoch, world_size)
    new = LRSchedule.for_pretraining(cfg.optim, steps_per_epoch, world_size)
    if old == new:
        return None
    return (f"the lr schedule changed with this resume (optim.epochs {saved.epochs} -> {cfg.optim.epochs}: "
            f"{old.total_steps} -> {new.total_steps} steps, warm-up {old.warmup_steps} -> {new.warmup_steps}): the lr "
            f"goes from {old(step):.3g} to {new(step):.3g} at step {step}, the new schedule's value there (a warm "
            "restart when the run had ended; to continue at a low lr instead, lower optim.lr or set "
            "optim.warmup_epochs)")
