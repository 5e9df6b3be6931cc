"""maelab's CPU fast paths behind :class:`maelab.models.kernels.TorchKernels`' interface (docs/performance.md),
each used only where it is measured faster than PyTorch's op at the model's shapes on this CPU
(:mod:`maelab.models.cpu.choice`):

- ``attention``: maelab's own C++ kernel (float32, head dims 16-64) where it is built; else, in training without a
  key mask, PyTorch's fused flash kernels with one gradient copy fewer (:class:`~maelab.models.cpu.ops.QKVAttention`);
  else PyTorch's scaled-dot-product attention.
- ``linear``: the GEMM first and the bias added in place after: ``addmm`` writes the bias into its whole output
  before the GEMM accumulates into it, and ``mm`` then ``add_`` costs 5-20% less at these sizes.
- ``residual`` (no stochastic depth): the bias added to x and h @ Wᵀ accumulated into that sum in place (one
  ``addmm_``): no bias broadcast written before the GEMM and no separate residual add, two passes fewer over the
  activations than ``x + linear(h)``.
Each falls back to PyTorch's op for inputs it does not cover (another dtype or device, autocast, a bias-less
linear), so a model built with these kernels computes the same as one built with PyTorch's, to float rounding.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Optional

import torch
from torch import Tensor, nn

from maelab.models.cpu import build
from maelab.models.cpu.cache import cached_choice, store_choice
from maelab.models.cpu.choice import Choice, Workload, choose
from maelab.models.cpu.ops import HAS_CPU_FLASH, QKVAttention, small_attention
from maelab.models.kernels import TORCH, TorchKernels

HEAD_DIMS = (16, 32, 48, 64)  # head dims the C++ kernel's vectorised path handles (float32)


def _fusable(x: Tensor, h: Tensor, linear: nn.Linear) -> bool:
    """Whether the in-place bias paths apply: CPU tensors of one dtype, no autocast, a bias."""
    return (x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
            and h.dtype == x.dtype == linear.weight.dtype and linear.bias is not None)


class CPUKernels(TorchKernels):
    """The CPU's fast paths that ``choice`` (:class:`maelab.models.cpu.choice.Choice`) turns on; PyTorch's ops for
    the others."""

    name = "cpu"

    def __init__(self, attention: str = "maelab", fused_gemms: bool = True, choice: Optional[Choice] = None) -> None:
        self.choice = choice or Choice(attention, fused_gemms)

    def linear(self, h: Tensor, linear: nn.Linear) -> Tensor:
        if not self.choice.fused_gemms or not _fusable(h, h, linear):
            return linear(h)
        out = h.reshape(-1, h.shape[-1]) @ linear.weight.t()
        return out.add_(linear.bias).view(*h.shape[:-1], out.shape[-1])

    def residual(self, x: Tensor, h: Tensor, linear: nn.Linear, drop_path: nn.Module) -> Tensor:
        if not self.choice.fused_gemms or not isinstance(drop_path, nn.Identity) or not _fusable(x, h, linear):
            return x + drop_path(linear(h))
        out = x.reshape(-1, x.shape[-1]) + linear.bias  # a new 2-D tensor: addmm_ on it, not on a view
        return out.addmm_(h.reshape(-1, h.shape[-1]), linear.weight.t()).view(x.shape)

    def attention(self, qkv: Tensor, heads: int, key_mask: Optional[Tensor] = None) -> Tensor:
        on_cpu, path = qkv.device.type == "cpu", self.choice.attention
        if (path == "maelab" and on_cpu and qkv.dtype == torch.float32
                and qkv.shape[-1] // (3 * heads) in HEAD_DIMS):
            return small_attention(qkv, heads, key_mask)
        if (path in ("maelab", "flash") and on_cpu and HAS_CPU_FLASH and key_mask is None and qkv.requires_grad
                and torch.is_grad_enabled()):
            return QKVAttention.apply(qkv, heads)
        return super().attention(qkv, heads, key_mask)


def candidates(workload: Workload, built: bool) -> tuple[str, ...]:
    """The attentions worth timing for ``workload``: maelab's where it is built and covers every stack's head dim,
    the flash path where the model trains (it has no key mask and no no-grad form), PyTorch's always."""
    names = ["torch"]
    if built and all(s.dim // s.heads in HEAD_DIMS for s in workload.stacks):
        names.insert(0, "maelab")
    if HAS_CPU_FLASH and workload.training:
        names.insert(-1, "flash")
    return tuple(names)


def measured(workload: Workload, built: bool) -> Choice:
    """The cached choice for ``workload``, else a new measurement (one line on stderr), cached."""
    choice = cached_choice(workload)
    if choice is None:
        start = time.perf_counter()
        choice = choose(workload, candidates(workload, built))
        store_choice(workload, choice)
        print(f"maelab: CPU kernels timed at this model's shapes in {time.perf_counter() - start:.1f} s "
              f"(once per CPU, thread count and shapes): {choice.summary()}", file=sys.stderr, flush=True)
    return choice


def kernels_for(device: torch.device | str, precision: str = "fp32", workload: Optional[Workload] = None,
                recorded: Optional[dict] = None) -> TorchKernels:
    """The kernels a model on ``device`` at ``precision`` runs with: PyTorch's ops off the CPU, at another precision
    than fp32, or with ``MAELAB_CPU_KERNELS=0``; on the CPU otherwise :class:`CPUKernels` with the fast paths
    measured faster at ``workload``'s shapes (:mod:`maelab.models.cpu.choice`; cached), or those ``recorded``
    in a run's checkpoint (a resume computes as the run did), or every one with ``MAELAB_CPU_KERNELS=1``.
    Without a workload nothing can be measured: PyTorch's ops. Building maelab's attention kernel may warn once
    (then PyTorch's)."""
    mode = build.mode()
    if torch.device(device).type != "cpu" or precision != "fp32" or mode == "off":
        return TORCH
    if recorded is not None:
        choice = Choice.from_dict(recorded, "as recorded in the run's checkpoint")
        if choice.attention == "maelab" and not build.available():
            choice = replace(choice, attention="flash")
        return CPUKernels(choice=choice)
    if mode == "on":
        return CPUKernels(choice=Choice("maelab" if build.available() else "flash", True,
                                        f"forced by {build.ENV}=1"))
    if workload is None:
        return TORCH
    return CPUKernels(choice=measured(workload, build.available()))


__all__ = ["CPUKernels", "HEAD_DIMS", "candidates", "kernels_for"]
