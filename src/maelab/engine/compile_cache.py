"""``train.compile_cache``: inductor's compiled artifacts carried in a file from one machine (or GPU window) to the
next, so that a warm start compiles in seconds instead of minutes (``torch.compiler.save_cache_artifacts`` and
``load_cache_artifacts``: inductor's FX-graph cache, AOT autograd's cache and autotuning results, as bytes).

Loaded before the first step when the file exists; written after the first step of an invocation (the step's first
builds) and again when training ends (what was built later: K = 1 under CUDA graphs, the model's forward at a new
visible count under a mask schedule).
A file another torch wrote, or that cannot be read, is reported in one line and the run compiles cold; it is then
replaced by this run's artifacts.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from maelab.atomic import atomic_file
from maelab.errors import ConfigError, output_error

StepFn = Callable[..., Tensor]


def load_compile_cache(path: Path) -> Optional[str]:
    """Hot-load the artifacts in ``path`` into this process's caches; returns the line to print (None when there is
    no file yet)."""
    if not path.is_file():
        return None
    quiet = logging.getLogger("torch.compiler._cache")  # it logs a traceback for a file it cannot read
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        info = torch.compiler.load_cache_artifacts(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - any file may be named: whatever the loader raises, one line
        info, why = None, f"{type(err).__name__}: {str(err).strip()[:160]}"
    else:
        why = "another torch wrote it, or it is corrupt"
    finally:
        quiet.setLevel(level)
    if not count(info):
        return f"compile cache {path} not used ({why}): compiling cold"
    return f"compile cache: {count(info)} artifacts loaded from {path}"


def save_compile_cache(path: Path) -> str:
    """Write the artifacts this process compiled (or loaded) to ``path``, atomically; returns the line to print (when
    inductor made none, e.g. under another backend, it says so and the file is left as it was). A folder that cannot
    be written is a UserError naming it."""
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return f"compile cache: inductor compiled nothing to write to {path} (only inductor's builds are cached)"
    data, info = saved
    try:
        with atomic_file(path, "wb") as f:
            f.write(data)
    except OSError as err:
        raise output_error(err, path, "compile cache", "give train.compile_cache a writable path, or drop it") from None
    return f"compile cache: {count(info)} artifacts ({len(data) / 1e6:.1f} MB) written to {path}"


def count(info: Any) -> int:
    """The number of artifacts a ``CacheInfo`` lists (0 for None)."""
    return sum(len(keys) for keys in info.artifacts.values()) if info is not None else 0


def check_compile_cache(cache: Optional[str], compiles: bool) -> None:
    """Refuse, when the run is built, a ``train.compile_cache`` the run would not read (``compiles``: whether it
    compiles anything) or could not write (a folder; a parent folder that is missing or not writable): one
    ConfigError naming the fix, before anything is compiled or written."""
    if cache is None:
        return
    path = Path(cache)
    if not compiles:
        raise ConfigError(f"train.compile_cache={cache} is read only by a run that compiles, and this one compiles "
                          "nothing (the CPU's default): add train.compile=true, or drop train.compile_cache")
    if path.is_dir():
        raise ConfigError(f"train.compile_cache={cache} is a folder: give a file in it, e.g. "
                          f"train.compile_cache={path / 'compile_cache.bin'}")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ConfigError(f"train.compile_cache={cache}: its folder {path.parent} does not exist or is not "
                          "writable: create it, or give another path")


class CompileCache:
    """``train.compile_cache`` around a run's step: the file loaded when the step is wrapped, written after the
    step's first call (the first builds) and again when training ends (builds met later: K = 1 under CUDA graphs,
    the model's forward at a new visible count). ``main``: only the main rank prints and writes."""

    def __init__(self, cache: Optional[str], main: bool = True) -> None:
        self.path = Path(cache) if cache is not None else None
        self.main = main

    def wrap(self, step_fn: StepFn) -> StepFn:
        """``step_fn`` with the cache loaded now and written after its first call (``step_fn`` itself when no
        cache is set)."""
        if self.path is None:
            return step_fn
        self._say(load_compile_cache(self.path))
        done = False

        def step(*args: Any, **kwargs: Any) -> Tensor:
            nonlocal done
            loss = step_fn(*args, **kwargs)
            if not done:
                done = True
                self.save()
            return loss

        return step

    def save(self) -> None:
        """Write what this process compiled so far (main rank only; nothing when no cache is set)."""
        if self.path is not None and self.main:
            self._say(save_compile_cache(self.path))

    def _say(self, line: Optional[str]) -> None:
        if line and self.main:
            print(f"maelab: {line}", file=sys.stderr, flush=True)
