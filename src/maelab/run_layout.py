"""Where everything of a run directory lives: the one description every writer and reader uses (the engine,
the evaluations, the figures, the ablation runner and report).

    RUN_DIR/
      config.yaml          the run's config (after overrides), rewritten on resume
      metrics.jsonl        one JSON record per logged step and per epoch
      tensorboard/         the same numbers for TensorBoard
      checkpoints/last.pt  the latest checkpoint (written atomically)
      eval/<name>.json     each evaluation's result; <name>_random_init.json for the random-init floor
      eval/cache/          cached features of every block (probe and k-NN share them)
      figures/             PNGs
      wandb/               W&B's files when train.wandb is set (run_id: the W&B run a resume continues)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FLOOR_SUFFIX = "_random_init"


@dataclass(frozen=True)
class RunLayout:
    """The paths of the run directory ``root`` (nothing is created or checked here)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def checkpoint(self) -> Path:
        """The latest checkpoint."""
        return self.checkpoints / "last.pt"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def eval_result(self, name: str, random_init: bool = False) -> Path:
        """eval/<name>.json (``random_init``: the floor's, eval/<name>_random_init.json)."""
        return self.eval_dir / f"{name}{FLOOR_SUFFIX if random_init else ''}.json"

    @property
    def feature_cache(self) -> Path:
        return self.eval_dir / "cache"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def wandb(self) -> Path:
        """W&B's files (train.wandb): its offline runs and the run id a resume continues."""
        return self.root / "wandb"

    def training_files(self) -> tuple[Path, ...]:
        """What a new run in this folder replaces (with overwrite=true); evaluations and figures are kept."""
        return (self.checkpoints, self.tensorboard, self.metrics, self.config)
