"""Where everything of a run directory lives: the one description every writer and reader uses (the engine,
the evaluations, the figures, the ablation runner and report).

    RUN_DIR/
      config.yaml          the run's config (after overrides), rewritten on resume
      run_info.json        what each start used: data, model, device, threads, batch, lr (engine/banner.py)
      metrics.jsonl        one JSON record per logged step and per epoch
      tensorboard/         the same numbers for TensorBoard
      checkpoints/last.pt  the latest checkpoint (written atomically)
      checkpoints/epoch_0010.pt   the checkpoint after 10 epochs, kept (train.keep_checkpoints)
      eval/<name>.json     each evaluation's result; <name>_random_init.json for the random-init floor;
                           <name>@epoch_0010.json for a kept checkpoint (--checkpoint epoch:10), <name>@test1000.json
                           on other data (data.limit_test=1000: maelab.eval.data_tag); eval.json: `maelab eval`
      eval/cache/          cached features of every block (probe and k-NN share them)
      figures/             PNGs (figures/epoch_0010/ for a kept checkpoint's)
      wandb/               W&B's files when train.wandb is set (run_id: the W&B run a resume continues)
      export/              the exported encoder (export/epoch_0010/ for a kept checkpoint's)

A checkpoint other than last.pt has a *tag*, its file's stem (``epoch_0010``): the evaluations, figures and
exports made from it carry the tag, so they never replace those of last.pt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

FLOOR_SUFFIX = "_random_init"
EPOCH_FILE = re.compile(r"epoch_(\d+)\.pt")


def epoch_tag(epoch: int) -> str:
    """The tag (file stem) of the checkpoint kept after ``epoch`` epochs: ``epoch_0010``."""
    return f"epoch_{epoch:04d}"


@dataclass(frozen=True)
class RunLayout:
    """The paths of the run directory ``root`` (nothing is created or checked here; only kept_checkpoints reads
    the folder's listing)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def run_info(self) -> Path:
        """What each start of the run used (a JSON list, one record per start: engine/banner.py)."""
        return self.root / "run_info.json"

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

    def epoch_checkpoint(self, epoch: int) -> Path:
        """The checkpoint kept after ``epoch`` epochs (train.keep_checkpoints): checkpoints/epoch_0010.pt."""
        return self.checkpoints / f"{epoch_tag(epoch)}.pt"

    def kept_checkpoints(self) -> dict[int, Path]:
        """{epoch: path} of the kept epoch checkpoints in the folder now, in epoch order (reads the listing)."""
        found = {}
        if self.checkpoints.is_dir():
            for path in self.checkpoints.iterdir():
                match = EPOCH_FILE.fullmatch(path.name)
                if match and path.is_file():
                    found[int(match.group(1))] = path
        return dict(sorted(found.items()))

    def checkpoint_tag(self, path: Path) -> Optional[str]:
        """None for this run's last.pt, else the tag of the results made from ``path``: its stem."""
        path = Path(path)
        return None if path.resolve() == self.checkpoint.resolve() else path.stem

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    def eval_result(self, name: str, random_init: bool = False, tag: Optional[str] = None) -> Path:
        """eval/<name>.json (``random_init``: the floor's, eval/<name>_random_init.json; ``tag``: a checkpoint
        other than last.pt, eval/<name>@<tag>.json)."""
        return self.eval_dir / f"{name}{FLOOR_SUFFIX if random_init else ''}{f'@{tag}' if tag else ''}.json"

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

    def figures_of(self, tag: Optional[str]) -> Path:
        """figures/, or figures/<tag>/ for a checkpoint other than last.pt."""
        return self.figures / tag if tag else self.figures

    def export_of(self, tag: Optional[str]) -> Path:
        """export/, or export/<tag>/ for a checkpoint other than last.pt."""
        return self.root / "export" / tag if tag else self.root / "export"

    def training_files(self) -> tuple[Path, ...]:
        """What a new run in this folder replaces (with overwrite=true); evaluations and figures are kept."""
        return (self.checkpoints, self.tensorboard, self.metrics, self.config)
