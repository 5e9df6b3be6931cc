"""The GAN's state: the discriminator, its optimizer and scaler, its settings, and the collapse watch."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from tqdm import tqdm

from maelab.config import GanConfig
from maelab.gan.discriminator import PatchDiscriminator
from maelab.state_fit import changed_settings, require_fit


@dataclass
class CollapseWatch:
    """Warns once when D's loss stays below ``gan.collapse_loss`` at ``gan.collapse_steps`` consecutive logged
    steps: D then wins outright and its gradient tells the MAE nothing (the warning and the field
    ``gan_collapse`` go to stderr and the step's metrics record). Not checkpointed: a resumed run watches anew."""

    threshold: float
    patience: int  # 0: never warn
    streak: int = 0
    warned: bool = False

    def update(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Read a step record's ``d_loss`` (absent while D is off); returns the fields to add to it."""
        if "d_loss" not in record or self.patience == 0 or self.warned:
            return {}
        self.streak = self.streak + 1 if record["d_loss"] < self.threshold else 0
        if self.streak < self.patience:
            return {}
        self.warned = True
        tqdm.write(f"maelab: warning: the discriminator's loss stayed below gan.collapse_loss={self.threshold} at "
              f"{self.patience} logged steps in a row (step {record.get('step')}): D wins outright and gives the "
              "MAE no useful signal; lower gan.lr, or set gan.r1=1 or gan.spectral_norm=true", file=sys.stderr)
        return {"gan_collapse": 1}


DISC_SHAPE = ("conditional", "width", "depth", "spectral_norm")  # the gan.* settings that shape D's parameters


@dataclass
class GanState:
    """The discriminator, its optimizer and scaler, and how it is trained."""

    cfg: GanConfig
    disc: PatchDiscriminator
    optimizer: torch.optim.Adam
    scaler: Optional[torch.amp.GradScaler]
    device: torch.device
    precision: str
    collapse: CollapseWatch = field(default_factory=lambda: CollapseWatch(0.0, 0))
    sync_grads: Optional[Callable[[], None]] = None  # under torchrun: average D's gradients over the ranks

    def active(self, epoch: int) -> bool:
        """Whether the adversarial term and the D step run in ``epoch`` (from ``gan.start_epoch`` on)."""
        return epoch >= self.cfg.start_epoch

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the GAN (under "gan"): D, its optimizer and, under fp16, its scaler."""
        state = {"disc": self.disc.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict, saved_config: Optional[Mapping[str, Any]] = None,
                        source: str = "the checkpoint") -> None:
        """Restore :meth:`state_dict`'s ``state``. With the checkpoint's config (``saved_config``, a dict) a D whose
        shapes the changed gan.* settings (:data:`DISC_SHAPE`) no longer fit is one clear error naming them and
        ``source``, before anything is loaded."""
        if saved_config is not None:
            shaping = {k: v for k, v in saved_config.get("gan", {}).items() if k in DISC_SHAPE}
            require_fit(self.disc, state["disc"], f"the discriminator saved in {source}",
                        changed_settings(shaping, {k: getattr(self.cfg, k) for k in shaping}, "gan"),
                        "Drop those gan.* overrides to resume, or start a new run with them")
        self.disc.load_state_dict(state["disc"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
