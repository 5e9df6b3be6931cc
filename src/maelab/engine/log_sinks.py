"""Where a run's numbers and images go besides metrics.jsonl: TensorBoard (``train.tensorboard``) and Weights &
Biases (``train.wandb=PROJECT``, the ``wandb`` extra), behind one small interface.

W&B follows its own environment: ``WANDB_MODE=offline`` writes the run under RUN_DIR/wandb without a network
(``wandb sync`` uploads it later), ``WANDB_API_KEY`` / ``wandb login`` for online runs. The W&B run id is kept
in RUN_DIR/wandb/run_id, so ``pretrain --resume`` continues the same W&B run.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np

from maelab.config import Config, to_dict
from maelab.errors import ConfigError, UserError
from maelab.run_layout import RunLayout


@dataclass(frozen=True)
class LoggedImage:
    """An image in a metrics record (an epoch hook's reconstructions): [H, W, 3] float32 in [0, 1]. The sinks
    draw it; metrics.jsonl does not hold it."""

    pixels: np.ndarray


class Sink(Protocol):
    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def image(self, tag: str, pixels: np.ndarray, step: int) -> None: ...

    def close(self) -> None: ...


class TensorBoardSink:
    """TensorBoard event files in RUN_DIR/tensorboard (scalars ``<kind>/<key>``, images likewise)."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(RunLayout(run_dir).tensorboard))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """A W&B run in project ``project``: the run's config, every scalar at the global step, images."""

    def __init__(self, run_dir: Path, project: str, cfg: Config) -> None:
        import wandb

        folder = RunLayout(run_dir).wandb
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / "run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(6)
        id_file.write_text(run_id)
        self.wandb = wandb
        try:
            self.run = wandb.init(project=project, dir=str(run_dir), name=Path(run_dir).name, id=run_id,
                                  resume="allow", config=to_dict(cfg))
        except Exception as err:  # wandb's own errors (login, network, a bad project name) are many classes
            raise UserError(f"W&B could not start the run of train.wandb={project} ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}): fix that, or set WANDB_MODE=offline, "
                            f"then start again with out_dir={run_dir} overwrite=true (no step was trained)") from None

    def scalars(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        self.run.log({tag: self.wandb.Image((np.clip(pixels, 0, 1) * 255).astype(np.uint8))}, step=step)

    def close(self) -> None:
        self.run.finish()


def check_sinks(cfg: Config) -> None:
    """Before a run writes anything: ``train.wandb`` needs the wandb package and, online, a W&B login (an API key
    in $WANDB_API_KEY or ~/.netrc, as ``wandb login`` writes it). A ConfigError says how to get either."""
    if not cfg.train.wandb:
        return
    if importlib.util.find_spec("wandb") is None:
        raise ConfigError(f"train.wandb={cfg.train.wandb} needs the wandb package: pip install 'maelab[wandb]' "
                          "(or drop train.wandb)")
    if os.environ.get("WANDB_MODE", "online") in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return
    if not _netrc_has_wandb():
        raise ConfigError(f"train.wandb={cfg.train.wandb} logs online, but no W&B login was found: run `wandb login` "
                          "(or set WANDB_API_KEY), or set WANDB_MODE=offline to log here and `wandb sync` later")


def _netrc_has_wandb() -> bool:
    """Whether ~/.netrc (or $NETRC) holds a W&B host's credentials, where ``wandb login`` writes them."""
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def open_sinks(run_dir: Path, cfg: Config) -> list[Any]:
    """The sinks ``cfg.train`` asks for (TensorBoard, W&B), opened on ``run_dir``."""
    sinks: list[Any] = [TensorBoardSink(run_dir)] if cfg.train.tensorboard else []
    if cfg.train.wandb:
        sinks.append(WandbSink(run_dir, cfg.train.wandb, cfg))
    return sinks


__all__ = ["LoggedImage", "Sink", "TensorBoardSink", "WandbSink", "check_sinks", "open_sinks"]
