"""Checkpoints written in the background: at a checkpoint the run's state is copied to CPU memory (the only part
on the training's critical path), then written (torch.save, fsync, atomic rename: :func:`save_checkpoint`) on a
thread while training goes on.

At most one write is in flight: a new checkpoint first waits for the previous one. The error of a write that
failed (a full disk, a folder that is not writable: a :class:`~maelab.errors.UserError`) is raised, the same
error, in the training thread: at the next epoch's end, the next checkpoint or the end of training. Leaving the
writer waits for the write in flight, so a run that ended (normally, on a stop signal or on an error) has its
last checkpoint complete on disk.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Optional

import torch
from torch import Tensor

from maelab.engine.checkpoint import checkpoint_path, save_checkpoint
from maelab.engine.kept import prune_kept
from maelab.engine.run import Run, checkpoint_state
from maelab.run_layout import RunLayout

Job = Callable[[], None]


def cpu_copy(state: Any) -> Any:
    """A snapshot of ``state`` (nested dicts, lists and tuples of tensors and plain values) in CPU memory that
    training can no longer change: each CPU tensor cloned (the optimizer changes weights and moments in place), each
    CUDA tensor copied to the host (then its device synchronised once); each mapping keeps its type and attributes
    (a state dict's ``_metadata``). Plain values are shared (immutable)."""
    devices: set[torch.device] = set()
    copied = _copy(state, devices)
    for device in devices:  # the non-blocking device-to-host copies have landed before anyone reads them
        torch.cuda.synchronize(device)
    return copied


def _copy(value: Any, devices: set[torch.device]) -> Any:
    if isinstance(value, Tensor):
        if value.is_cuda:
            devices.add(value.device)
        return value.detach().to("cpu", non_blocking=value.is_cuda, copy=True)
    if isinstance(value, dict):
        out = copy.copy(value)
        for key, item in value.items():
            out[key] = _copy(item, devices)
        return out
    if isinstance(value, list):
        return [_copy(item, devices) for item in value]
    if type(value) is tuple:
        return tuple(_copy(item, devices) for item in value)
    return value


def write_files(state: dict[str, Any], run_dir: Path, kept_epoch: Optional[int], keep: int) -> None:
    """checkpoints/last.pt, and first the kept checkpoint of ``kept_epoch`` epochs when given (then the kept ones
    beyond ``keep``, train.keep_checkpoints, are deleted): a crash between the two leaves last.pt before that epoch,
    so a resume trains it again and writes its kept checkpoint. Raises a UserError when the folder is full or not
    writable (the previous files intact)."""
    if kept_epoch is not None:
        save_checkpoint(state, RunLayout(run_dir).epoch_checkpoint(kept_epoch))
    save_checkpoint(state, checkpoint_path(run_dir))
    if kept_epoch is not None:
        prune_kept(run_dir, keep, kept_epoch)


class CheckpointWriter:
    """Runs checkpoint writes on a background thread, one at a time; a write's error is raised in the caller's
    thread. As a context manager, leaving it waits for the write in flight (and raises its error)."""

    def __init__(self) -> None:
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def submit(self, job: Job) -> None:
        """Run ``job`` on a thread once the previous one has finished. Raises the previous job's error instead of
        starting ``job``."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job,), name="maelab-checkpoint-writer")
        self._thread.start()

    def _run(self, job: Job) -> None:
        try:
            job()
        except BaseException as err:  # noqa: BLE001 - handed to the training thread by wait()
            self._error = err

    def busy(self) -> bool:
        """Whether a write is running."""
        return self._thread is not None and self._thread.is_alive()

    def raise_failed(self) -> None:
        """Raise the error of a write that has ended and failed; never waits for one in flight."""
        if self._thread is None or not self._thread.is_alive():
            self.wait()

    def wait(self) -> None:
        """Wait for the write in flight; raises its error (a UserError for a full or unwritable folder)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, kind: Optional[type[BaseException]], err: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        # on an error, too: the write in flight completes, and its failure (which came first) is the one raised
        self.wait()


def write_checkpoints(writer: CheckpointWriter, run: Run, kept_epoch: Optional[int]) -> None:
    """Write the run's checkpoint in the background (rank 0): wait for the previous write (raising its error), copy
    the state to CPU memory now, then hand :func:`write_files` to ``writer``."""
    writer.wait()
    state = cpu_copy(checkpoint_state(run))
    writer.submit(functools.partial(write_files, state, run.run_dir, kept_epoch, run.cfg.train.keep_checkpoints))
