"""maelab's CPU fast paths behind :class:`maelab.models.kernels.TorchKernels`' interface (docs/performance.md).

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

from typing import Optional

import torch
from torch import Tensor, nn

from maelab.models.cpu import build
from maelab.models.cpu.ops import HAS_CPU_FLASH, QKVAttention, small_attention
from maelab.models.kernels import TORCH, TorchKernels

HEAD_DIMS = (16, 32, 48, 64)  # head dims the C++ kernel's vectorised path handles (float32)


def _fusable(x: Tensor, h: Tensor, linear: nn.Linear) -> bool:
    """Whether the in-place bias paths apply: CPU tensors of one dtype, no autocast, a bias."""
    return (x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
            and h.dtype == x.dtype == linear.weight.dtype and linear.bias is not None)


class CPUKernels(TorchKernels):
    """The CPU's fast paths; ``small_attention``: whether maelab's C++ kernel is built and used."""

    name = "cpu"

    def __init__(self, small_attention: bool = True) -> None:
        self.small_attention = small_attention

    def linear(self, h: Tensor, linear: nn.Linear) -> Tensor:
        if not _fusable(h, h, linear):
            return linear(h)
        out = h.reshape(-1, h.shape[-1]) @ linear.weight.t()
        return out.add_(linear.bias).view(*h.shape[:-1], out.shape[-1])

    def residual(self, x: Tensor, h: Tensor, linear: nn.Linear, drop_path: nn.Module) -> Tensor:
        if not isinstance(drop_path, nn.Identity) or not _fusable(x, h, linear):
            return x + drop_path(linear(h))
        out = x.reshape(-1, x.shape[-1]) + linear.bias  # a new 2-D tensor: addmm_ on it, not on a view
        return out.addmm_(h.reshape(-1, h.shape[-1]), linear.weight.t()).view(x.shape)

    def attention(self, qkv: Tensor, heads: int, key_mask: Optional[Tensor] = None) -> Tensor:
        on_cpu = qkv.device.type == "cpu"
        if (self.small_attention and on_cpu and qkv.dtype == torch.float32
                and qkv.shape[-1] // (3 * heads) in HEAD_DIMS):
            return small_attention(qkv, heads, key_mask)
        if on_cpu and HAS_CPU_FLASH and key_mask is None and qkv.requires_grad and torch.is_grad_enabled():
            return QKVAttention.apply(qkv, heads)
        return super().attention(qkv, heads, key_mask)


def kernels_for(device: torch.device | str, precision: str = "fp32") -> TorchKernels:
    """The kernels a model on ``device`` at ``precision`` runs best with: the CPU's fast paths for fp32 on the CPU
    unless ``MAELAB_CPU_KERNELS=0`` (maelab's C++ attention where it builds; one warning and PyTorch's where it
    does not), PyTorch's ops everywhere else."""
    if torch.device(device).type != "cpu" or precision != "fp32" or not build.enabled():
        return TORCH
    return CPUKernels(small_attention=build.available())


__all__ = ["CPUKernels", "HEAD_DIMS", "kernels_for"]
