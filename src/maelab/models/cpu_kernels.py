"""maelab's own CPU kernel: softmax attention for short sequences, built once per checkout and machine from ``csrc/``.

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

import hashlib
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

SOURCE = Path(__file__).resolve().parent / "csrc" / "small_attention.cpp"
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
HEAD_DIMS = (16, 32, 48, 64)  # head dims the kernel's vectorised path handles (float32)
ENV = "MAELAB_CPU_KERNELS"

_state: dict[str, Optional[bool]] = {"built": None}

try:  # checked on every attention and linear call: imported once here
    from torch.utils._python_dispatch import is_in_torch_dispatch_mode as _in_dispatch_mode
except ImportError:  # a torch without it: no dispatch mode is ever reported
    def _in_dispatch_mode() -> bool:
        return False


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


def clear_stale_lock(name: str, older_than_s: float = 600.0) -> None:
    """Remove the build lock a killed build left behind (torch's loader would otherwise wait on it forever)."""
    from torch.utils import cpp_extension

    locate = getattr(cpp_extension, "_get_build_directory", None)
    if locate is None:
        return
    lock = Path(locate(name, verbose=False)) / "lock"
    try:
        if time.time() - lock.stat().st_mtime > older_than_s:
            lock.unlink()
    except OSError:
        pass


def build(source: Path = SOURCE, name: Optional[str] = None) -> bool:
    """Compile (or load from the cache) ``source`` as torch ops; False, with one warning, when that fails."""
    from torch.utils.cpp_extension import load

    name = name or extension_name()
    _ninja_on_path()
    clear_stale_lock(name)
    start = time.perf_counter()
    try:
        load(name=name, sources=[str(source)], extra_cflags=FLAGS, extra_ldflags=["-fopenmp"],
             is_python_module=False, verbose=False)
    except Exception as err:  # noqa: BLE001 - any build or load failure means: use PyTorch's kernels
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(f"maelab: the CPU attention kernel could not be built ({first}); using PyTorch's "
                      f"attention kernels instead (slower). Set {ENV}=0 to skip the build.", stacklevel=2)
        return False
    seconds = time.perf_counter() - start
    if seconds > 2:  # compiled now, not loaded from torch's extension cache
        print(f"maelab: built the CPU attention kernel in {seconds:.0f} s (once per checkout; torch's extension "
              "cache)", file=sys.stderr, flush=True)
    return hasattr(torch.ops.maelab, "small_attention_forward")


def available() -> bool:
    """Whether the kernel is enabled (``MAELAB_CPU_KERNELS`` not 0) and built; builds it on the first call."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if _state["built"] is None:
        _state["built"] = build()
    return bool(_state["built"])


def traced() -> bool:
    """Whether torch.compile or a dispatch mode (FlopCounterMode, fake tensors...) is watching: the kernel's ops
    have no FLOP formula nor shape function, so PyTorch's attention serves those calls."""
    return torch.compiler.is_compiling() or bool(_in_dispatch_mode())


def applies(qkv: Tensor, heads: int) -> bool:
    """Whether the kernel serves this call: CPU float32, a vectorised head dim, eager and not traced."""
    return (qkv.device.type == "cpu" and qkv.dtype == torch.float32 and qkv.dim() == 3
            and qkv.shape[-1] // (3 * heads) in HEAD_DIMS and not traced() and available())


class SmallAttention(torch.autograd.Function):
    """qkv [N, T, 3 * D] (+ key_mask [N, T] bool, True = attend) -> [N, T, D] on maelab's CPU kernel."""

    @staticmethod
    def forward(ctx, qkv: Tensor, heads: int, key_mask: Optional[Tensor]) -> Tensor:  # type: ignore[override]
        qkv = qkv.contiguous()
        keys = None if key_mask is None else key_mask.contiguous()
        out, lse = torch.ops.maelab.small_attention_forward(qkv, heads, keys)
        ctx.save_for_backward(qkv, out, lse, keys)
        ctx.heads = heads
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        qkv, out, lse, keys = ctx.saved_tensors
        dqkv = torch.ops.maelab.small_attention_backward(grad.contiguous(), qkv, out, lse, ctx.heads, keys)
        return dqkv, None, None


def small_attention(qkv: Tensor, heads: int, key_mask: Optional[Tensor] = None) -> Tensor:
    """Multi-head softmax attention on maelab's CPU kernel: qkv [N, T, 3 * D] -> [N, T, D] (call :func:`applies`)."""
    if qkv.requires_grad and torch.is_grad_enabled():
        return SmallAttention.apply(qkv, heads, key_mask)
    keys = None if key_mask is None else key_mask.contiguous()
    return torch.ops.maelab.small_attention_forward(qkv.contiguous(), heads, keys)[0]


__all__ = ["SmallAttention", "applies", "available", "build", "extension_name", "small_attention"]
