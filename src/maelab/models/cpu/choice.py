"""Which of maelab's CPU fast paths a model uses: each only where it is measured faster than PyTorch's own op, at
the model's shapes, on this CPU (the way cuDNN's benchmark mode and Triton's autotuning choose).

The paths are the attention (maelab's C++ kernel, PyTorch's fused flash kernels with one gradient copy fewer, or
two matmuls around a softmax:
:mod:`maelab.models.cpu.ops`) and the fused GEMMs (bias added in place, residual accumulated into by ``addmm_``:
:mod:`maelab.models.cpu.layers`). A short timing (forward, and backward when the model trains; about
a second) compares each with PyTorch's op at the shapes of each stack of blocks, weighted by its depth; a path is
used only when it is at least :data:`MARGIN` faster. The answer is cached per CPU, torch version, thread count and
shapes beside the kernel's build (:mod:`maelab.models.cpu.cache`), so a machine measures a model's shapes once.

Why: the kernels were tuned on an Intel Sapphire Rapids (AVX-512), where they make a keras-preset step 7-16%
faster; on an AMD EPYC Zen 3 (AVX2) the same kernels made it 1.6x slower (docs/performance.md).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

MARGIN = 0.03  # a fast path must beat PyTorch's op by 3%: within that the timing cannot tell them apart
ROUNDS, WARMUP = 5, 1  # timed calls per candidate, taken in turn so that all see the same load; untimed first calls
METHOD = 2  # the timing's method (2: backward from a dense gradient): a choice timed by another is timed anew
MAX_BATCH = 64  # images the timing uses at most: per image, a larger batch runs the same loops more often
ATTENTION = ("maelab", "flash", "math", "torch")  # C++ kernel, flash via QKVAttention, two matmuls, PyTorch's SDPA


@dataclass(frozen=True)
class Stack:
    """One stack of transformer blocks as a model runs it: ``depth`` blocks over ``tokens`` tokens of ``dim``
    channels, ``heads`` heads and an MLP of ``mlp_dim``."""

    tokens: int
    dim: int
    heads: int
    mlp_dim: int
    depth: int


@dataclass(frozen=True)
class Workload:
    """What a model computes per step: its stacks at ``batch`` images, with a backward pass when ``training``."""

    batch: int
    stacks: tuple[Stack, ...]
    training: bool

    def key(self) -> str:
        shapes = ",".join(f"{s.tokens}x{s.dim}h{s.heads}m{s.mlp_dim}d{s.depth}" for s in self.stacks)
        return f"b{min(self.batch, MAX_BATCH)}:{shapes}:{'train' if self.training else 'eval'}"


def mae_workload(spec, batch: int, mask_ratio: float, training: bool = True) -> Workload:
    """The MAE of ``spec`` (a :class:`maelab.presets.ModelSpec`) at ``mask_ratio``: the encoder over the visible
    patches plus the cls and register tokens, the decoder over every patch plus cls."""
    visible = spec.num_patches - int(round(spec.num_patches * mask_ratio))
    return Workload(batch, (
        Stack(visible + 1 + spec.registers, spec.embed_dim, spec.num_heads, spec.mlp_dim, spec.depth),
        Stack(spec.num_patches + 1, spec.decoder_embed_dim, spec.decoder_num_heads, spec.decoder_mlp_dim,
              spec.decoder_depth)), training)


def encoder_workload(spec, batch: int, training: bool) -> Workload:
    """The encoder of ``spec`` over whole images (features, fine-tuning)."""
    tokens = spec.num_patches + 1 + spec.registers
    return Workload(batch, (Stack(tokens, spec.embed_dim, spec.num_heads, spec.mlp_dim, spec.depth),), training)


@dataclass(frozen=True)
class Choice:
    """The fast paths in use: ``attention`` one of :data:`ATTENTION`, ``fused_gemms``; ``how`` they were chosen
    (measured, cached, forced by MAELAB_CPU_KERNELS, recorded in a checkpoint); ``speedups``: PyTorch's time over
    each path's (above 1: the path is faster), where measured."""

    attention: str = "maelab"
    fused_gemms: bool = True
    how: str = "forced"
    speedups: dict[str, float] = field(default_factory=dict, compare=False)

    def summary(self) -> str:
        """One line: "flash attention with one copy fewer (1.09x PyTorch's), PyTorch's GEMMs (0.99x); measured"."""
        att = {"maelab": "maelab's C++ attention", "flash": "flash attention with one copy fewer",
               "math": "attention by two matmuls", "torch": "PyTorch's attention"}[self.attention]
        if self.attention in self.speedups:
            att += f" ({self.speedups[self.attention]:.2f}x PyTorch's)"
        gemm = "fused GEMMs" if self.fused_gemms else "PyTorch's GEMMs"
        if "fused" in self.speedups:
            gemm += f" ({self.speedups['fused']:.2f}x)"
        return f"{att}, {gemm}; {self.how}"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, how: str) -> Choice:
        return cls(str(d["attention"]), bool(d["fused_gemms"]), how, dict(d.get("speedups") or {}))


def median_times(calls: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Median seconds of each call, timed in turn round by round (after :data:`WARMUP` untimed calls each)."""
    for call in calls.values():
        for _ in range(WARMUP):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def choose(workload: Workload, candidates: tuple[str, ...], timer: Callable = median_times) -> Choice:
    """Time each attention in ``candidates`` (a subset of :data:`ATTENTION`, 'torch' always) and the fused GEMMs
    against PyTorch's at ``workload``'s shapes; the fastest attention that beats PyTorch's by :data:`MARGIN`, and the
    fused GEMMs only if they do. ``timer`` maps {name: call} to {name: seconds} (tests give their own)."""
    with torch.random.fork_rng(devices=[]):  # the layers' init draws from the global stream: the run's is untouched
        return _choose(workload, candidates, timer)


def _choose(workload: Workload, candidates: tuple[str, ...], timer: Callable) -> Choice:
    from maelab.models.cpu.timing_calls import attention_calls, gemm_calls

    gen = torch.Generator().manual_seed(0)  # the timing's inputs
    att_total = dict.fromkeys(candidates, 0.0)
    gemm_total = {"fused": 0.0, "torch": 0.0}
    for stack in workload.stacks:
        n = min(workload.batch, MAX_BATCH)
        for name, seconds in timer(attention_calls(stack, n, workload.training, candidates, gen)).items():
            att_total[name] += stack.depth * seconds
        for name, seconds in timer(gemm_calls(stack, n, workload.training, gen)).items():
            gemm_total[name] += stack.depth * seconds
    speedups = {name: att_total["torch"] / t for name, t in att_total.items() if name != "torch" and t > 0}
    speedups["fused"] = gemm_total["torch"] / gemm_total["fused"] if gemm_total["fused"] > 0 else 0.0
    faster = [n for n in candidates if n != "torch" and speedups.get(n, 0.0) >= 1 / (1 - MARGIN)]
    attention = max(faster, key=lambda n: speedups[n]) if faster else "torch"
    fused = speedups["fused"] >= 1 / (1 - MARGIN)
    return Choice(attention, fused, "measured", {k: round(v, 3) for k, v in speedups.items()})


__all__ = ["ATTENTION", "MARGIN", "Choice", "Stack", "Workload", "choose", "encoder_workload", "mae_workload",
           "median_times"]
