"""The run directory: creating it, refusing to clobber another run."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Optional

from maelab.engine.run_lock import run_lock
from maelab.errors import UserError, require_folder
from maelab.run_layout import RunLayout


def default_run_dir(name: str) -> Path:
    """runs/<name>-<timestamp> under the current directory."""
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(out_dir: Optional[str], name: str, overwrite: bool) -> Path:
    """The run directory a new run would use (``~`` expanded); one that already holds a run is refused unless
    ``overwrite``.
    Writes nothing: a run checks its folder, then loads its data and builds its model, and only then
    :func:`prepare_run_dir` replaces anything, so that a mistake found on the way loses nothing."""
    # ~ as data.root reads it (out_dir=~/runs/x made a folder named ~ in the current directory)
    run_dir = require_folder(Path(out_dir).expanduser() if out_dir else default_run_dir(name), "out_dir")
    if holds_run(run_dir) and not overwrite:
        raise UserError(
            f"out_dir {run_dir} already holds a run: continue it with --resume {run_dir}, "
            "choose another out_dir, or pass overwrite=true to replace it"
        )
    return run_dir


def holds_run(run_dir: Path) -> bool:
    layout = RunLayout(run_dir)
    return layout.config.exists() or layout.checkpoints.exists()


def prepare_run_dir(out_dir: Optional[str], name: str, overwrite: bool) -> Path:
    """Create a fresh run directory (after :func:`check_run_dir`'s checks); with ``overwrite`` the run it holds
    is removed, under the run's lock (:mod:`maelab.engine.run_lock`): refused (RunBusy) while another process
    trains it."""
    run_dir = check_run_dir(out_dir, name, overwrite)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create out_dir {run_dir} ({err.strerror}): choose a writable folder") from None
    with run_lock(run_dir):  # re-entrant: a pretraining that holds it already goes on
        if holds_run(run_dir):
            for target in RunLayout(run_dir).training_files():
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
    return run_dir
