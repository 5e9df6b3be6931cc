"""Building maelab's own CPU kernel (softmax attention for short sequences), once per checkout and machine, from
``csrc/``.

``csrc/small_attention.cpp`` computes attention on the fused qkv projection, forward and backward, one
(sample, head) problem per task from cache, and writes dq, dk, dv straight into the projection's gradient
layout. At the keras preset's sizes a training step runs 7-16% faster than with PyTorch's fused CPU
kernels (docs/performance.md). It is compiled with torch's C++-extension loader (a C++ compiler and ninja)
the first time it is needed, with ``-march=native``, into torch's extension cache under a name that includes
this CPU's instruction-set flags, so a cache shared between different machines never runs a foreign binary.
Where it cannot be built (no compiler, an unsupported platform) maelab warns once and uses PyTorch's kernels;
``MAELAB_CPU_KERNELS=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import torch

from maelab.models.cpu.ops import register_fakes

SOURCE = Path(__file__).resolve().parent / "csrc" / "small_attention.cpp"
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
ENV = "MAELAB_CPU_KERNELS"

_state: dict[str, Optional[bool]] = {"built": None}


def cpu_signature() -> str:
    """A short hash of this CPU's model and instruction-set flags (the build targets ``-march=native``)."""
    text = platform.machine() + platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "model name", "Features")):
                text += line
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def extension_name() -> str:
    """The name the kernel is built and cached under: per source, per checkout and per CPU.

    The checkout's path is part of it because torch's loader records the source's path in the build folder and
    rebuilds when another checkout at another path asks for the same name (several worktrees then rebuilt the
    same kernel over and over, once while another process was loading it)."""
    key = SOURCE.read_bytes() + " ".join(FLAGS).encode() + str(SOURCE.resolve()).encode()
    digest = hashlib.sha256(key).hexdigest()[:10]
    return f"maelab_small_attention_{digest}_{cpu_signature()}"


def _ninja_on_path() -> None:
    """Put the ``ninja`` wheel's binary on PATH (torch's loader calls ``ninja`` by name)."""
    try:
        import ninja  # type: ignore[import-not-found]
    except ImportError:
        return
    bin_dir = getattr(ninja, "BIN_DIR", None)
    if bin_dir and bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def _baton(name: str) -> Optional[Path]:
    """torch's build lock for ``name`` (its loader creates it with O_EXCL and waits while it exists)."""
    from torch.utils import cpp_extension

    locate = getattr(cpp_extension, "_get_build_directory", None)
    return None if locate is None else Path(locate(name, verbose=False)) / "lock"


@contextlib.contextmanager
def build_lock(name: str) -> Iterator[None]:
    """Hold an OS file lock while ``name`` is built or loaded, and clear torch's build lock under it.

    torch's loader marks a build with a lock file and waits, without limit, while one exists; a process killed
    mid-build (a test's SIGKILL, a job's time limit) leaves it, and every later process then hung. An OS lock
    (``fcntl.flock``) is released by the kernel when its holder dies, so under it no maelab build is in flight
    and a lock file found there is a killed build's. Where ``fcntl`` is missing, a lock file older than 10
    minutes is taken as stale instead."""
    baton = _baton(name)
    if baton is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: fall back to the lock file's age
        clear_stale_lock(name)
        yield
        return
    baton.parent.mkdir(parents=True, exist_ok=True)
    with open(baton.parent / "maelab.flock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released on close, or by the kernel when this process dies
        try:
            baton.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clear_stale_lock(name: str, older_than_s: float = 600.0) -> None:
    """Remove torch's build lock when older than ``older_than_s`` (where no OS file lock is to be had)."""
    lock = _baton(name)
    try:
        if lock is not None and time.time() - lock.stat().st_mtime > older_than_s:
            lock.unlink()
    except OSError:
        pass


def build(source: Path = SOURCE, name: Optional[str] = None) -> bool:
    """Compile (or load from the cache) ``source`` as torch ops; False, with one warning, when that fails."""
    from torch.utils.cpp_extension import load

    name = name or extension_name()
    _ninja_on_path()
    start = time.perf_counter()
    # a cache hit loads in well under 2 s; a build takes ~30 s on 2 cores: said when it starts, not only at its end
    building = threading.Timer(2.0, print, ("maelab: building the CPU attention kernel (once per checkout, about "
                                            "30 s on 2 cores) ...",), {"file": sys.stderr, "flush": True})
    building.daemon = True
    building.start()
    try:
        with build_lock(name):
            load(name=name, sources=[str(source)], extra_cflags=FLAGS, extra_ldflags=["-fopenmp"],
                 is_python_module=False, verbose=False)
    except Exception as err:  # noqa: BLE001 - any build or load failure means: use PyTorch's kernels
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(f"maelab: the CPU attention kernel could not be built ({first}); using PyTorch's "
                      f"attention kernels instead (slower). Set {ENV}=0 to skip the build.", stacklevel=2)
        return False
    finally:
        building.cancel()
    seconds = time.perf_counter() - start
    if seconds > 2:  # compiled now, not loaded from torch's extension cache
        print(f"maelab: built the CPU attention kernel in {seconds:.0f} s (once per checkout; torch's extension "
              "cache)", file=sys.stderr, flush=True)
    return hasattr(torch.ops.maelab, "small_attention_forward")


def mode() -> str:
    """What ``MAELAB_CPU_KERNELS`` asks: "off" (0, false, no, off: PyTorch's ops), "auto" (unset, empty or auto:
    each fast path where measured faster, :mod:`maelab.models.cpu.choice`) or "on" (anything else: every one)."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return "off"
    return "auto" if value in ("", "auto") else "on"


def enabled() -> bool:
    """Whether ``MAELAB_CPU_KERNELS`` allows maelab's CPU kernels (anything but 0, false, no, off)."""
    return mode() != "off"


def available() -> bool:
    """Whether the kernel is enabled and built; builds it on the first call (and registers its ops' shapes)."""
    if not enabled():
        return False
    if _state["built"] is None:
        _state["built"] = build()
        if _state["built"]:
            register_fakes()
    return bool(_state["built"])


__all__ = ["ENV", "available", "build", "build_lock", "clear_stale_lock", "enabled", "extension_name", "mode"]
