"""``train.compile_cache``: inductor's compiled artifacts carried in a file from one machine (or GPU window) to the
next, so that a warm start compiles in seconds instead of minutes (``torch.compiler.save_cache_artifacts`` and
``load_cache_artifacts``: inductor's FX-graph cache, AOT autograd's cache and autotuning results, as bytes).

Loaded before the first step when the file exists; written after the first step of an invocation (every graph of
the run is compiled by then: the whole step compiles once, the model's forward and backward at their first call).
A file another torch wrote, or that cannot be read, is reported in one line and the run compiles cold; it is then
replaced by this run's artifacts.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from maelab.atomic import atomic_file
from maelab.errors import output_error

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


def with_compile_cache(step_fn: StepFn, cache: Optional[str]) -> StepFn:
    """``step_fn`` with ``train.compile_cache`` around it: the file loaded now, written after the first call."""
    if cache is None:
        return step_fn
    path = Path(cache)
    _say(load_compile_cache(path))
    done = False

    def step(*args: Any, **kwargs: Any) -> Tensor:
        nonlocal done
        loss = step_fn(*args, **kwargs)
        if not done:
            done = True
            _say(save_compile_cache(path))
        return loss

    return step


def _say(line: Optional[str]) -> None:
    if line:
        print(f"maelab: {line}", file=sys.stderr, flush=True)
