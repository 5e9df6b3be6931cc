"""Checkpoints: written atomically, loaded without pickle code execution (weights_only=True)."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from maelab.atomic import temp_beside
from maelab.errors import UserError, output_error, resume_hint
from maelab.models.state_keys import upgrade_state_dict
from maelab.run_layout import RunLayout


def checkpoint_path(run_dir: Path) -> Path:
    """Where a run's latest checkpoint lives."""
    return RunLayout(run_dir).checkpoint


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to a temporary file beside ``path``, fsync, then rename over it.

    A crash at any moment leaves either the previous checkpoint or the new one, never a partial file; the
    temporary files a killed writer left behind are removed after the next successful save. A folder that is
    full or not writable is one clear error (a UserError) and the previous checkpoint stays as it was.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path, path.name + ".")
    except OSError as err:
        raise output_error(err, path, "checkpoint", resume_hint(path.parent.parent)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            # serialised in memory first: torch.save's zip writer reports a full disk as a RuntimeError ("unexpected
            # pos"), a plain write as the OSError (ENOSPC) that the clear message below names
            buffer = io.BytesIO()
            torch.save(state, buffer)
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise output_error(err, path, "checkpoint", resume_hint(path.parent.parent)) from None
        raise
    for stale in path.parent.glob(f"{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


TRAINING_KEYS = ("model", "optimizer", "step", "config", "rng")  # what a resume needs (see checkpoint_state)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu",
                    needs: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing, corrupt, unsafe or incomplete file (a mapping
    without one of the keys in ``needs``) is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: give a run directory that holds checkpoints/last.pt")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any file at all may be given: whatever torch.load raises, one line
        raise UserError(f"cannot load checkpoint {path} ({_reason(err)}): it is corrupt, truncated or not a maelab "
                        "checkpoint; use another run or start a new one") from None
    missing = [k for k in needs if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(f"{path} is not a complete maelab checkpoint (no {', '.join(missing)}): give the run "
                        "directory of a maelab pretraining run, or start a new one")
    if isinstance(state, dict) and isinstance(state.get("model"), dict):  # written by an older maelab: rename
        state["model"] = upgrade_state_dict(state["model"])
    return state


def _reason(err: Exception) -> str:
    """The first line of a load error, without torch's hint to load with weights_only=False (which would run
    the file's code)."""
    if isinstance(err, pickle.UnpicklingError) and "weights_only" in str(err):
        return "it holds objects other than tensors and plain data, which maelab does not unpickle"
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__
