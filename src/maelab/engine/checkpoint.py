"""Checkpoints: written atomically, loaded without pickle code execution (weights_only=True)."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from maelab.errors import UserError

CHECKPOINT_NAME = "last.pt"


def checkpoint_path(run_dir: Path) -> Path:
    """Where a run's latest checkpoint lives."""
    return Path(run_dir) / "checkpoints" / CHECKPOINT_NAME


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to a temporary file beside ``path``, fsync, then rename over it.

    A crash at any moment leaves either the previous checkpoint or the new one, never a partial file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing, corrupt or unsafe file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: give a run directory that holds checkpoints/{CHECKPOINT_NAME}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot load checkpoint {path} ({first[:200]}): it is corrupt, truncated or not a maelab checkpoint; "
            "use another run or start a new one"
        ) from None
