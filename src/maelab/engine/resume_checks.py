"""What a resume may do: refuse one that would train nothing, or whose settings contradict its checkpoint,
before anything is written."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from maelab.config import Config
from maelab.errors import UserError


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
