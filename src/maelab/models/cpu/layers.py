"""maelab's CPU fast paths as drop-in layers (docs/performance.md): subclasses of the model's own ``nn.Linear``,
:class:`~maelab.models.vit.Block` and :class:`~maelab.models.vit.Attention` with the same parameters and the same
results to float rounding, swapped in once when a model is built (:func:`use_kernels`), each only where
:mod:`maelab.models.cpu.choice` measured it faster than PyTorch's op on this CPU:

- :class:`FusedLinear` (:func:`~maelab.models.cpu.ops.fused_linear`): the GEMM first and the bias added in
  place after: ``addmm`` writes the bias into its whole output before the GEMM accumulates into it, and ``mm``
  then ``add_`` costs 5-20% less at these sizes.
- :class:`FusedBlock` (no stochastic depth; :func:`~maelab.models.cpu.ops.fused_residual`): each residual
  branch's bias added to x and h @ Wᵀ accumulated into that sum in place (one ``addmm_``): no bias broadcast
  written before the GEMM and no separate residual add, two passes fewer over the activations than
  ``x + linear(h)``.
- :class:`CPUAttention`: the attention as two matmuls around a softmax
  (:func:`~maelab.models.cpu.ops.math_attention`: at a few dozen tokens 1.6-2.2x PyTorch's flash kernel on an
  AVX2 CPU); or maelab's own C++ kernel (float32, head dims 16-64) where it is built; or, in training without a
  key mask, PyTorch's fused flash kernels with one gradient copy fewer (:class:`~maelab.models.cpu.ops.QKVAttention`);
  else PyTorch's scaled-dot-product attention.
Each falls back to PyTorch's op for inputs it does not cover (another dtype or device, autocast, a bias-less
linear). The model's own classes are what runs on CUDA and at other precisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor, nn

from maelab.models.cpu.ops import (
    HAS_CPU_FLASH,
    QKVAttention,
    fused_linear,
    fused_residual,
    math_attention,
    small_attention,
)
from maelab.models.patches import gather_rows
from maelab.models.vit import Attention, Block

if TYPE_CHECKING:
    from maelab.models.cpu.choice import Choice

HEAD_DIMS = (16, 32, 48, 64)  # head dims the C++ kernel's vectorised path handles (float32)
CHOICE_ATTR = "maelab_cpu_kernels"  # where use_kernels notes its choice on the module it converted


class FusedLinear(nn.Linear):
    """``nn.Linear`` computed by :func:`fused_linear`."""

    def forward(self, h: Tensor) -> Tensor:
        return fused_linear(h, self)


class FusedBlock(Block):
    """:class:`~maelab.models.vit.Block` (without stochastic depth) with both residual adds folded into the GEMMs
    of the attention's projection and the MLP's fc2 (:func:`fused_residual`)."""

    def forward(self, x: Tensor, key_mask: Optional[Tensor] = None, rows: Optional[Tensor] = None) -> Tensor:
        h = self.attn.attend(self.attn.qkv(self.norm1(x)), key_mask)
        if rows is not None:
            x, h = gather_rows(x, rows), gather_rows(h, rows)
        x = fused_residual(x, h, self.attn.proj)  # x + proj(attention)
        return fused_residual(x, self.mlp.act(self.mlp.fc1(self.norm2(x))), self.mlp.fc2)  # x + fc2(gelu(fc1(.)))


class CPUAttention(Attention):
    """:class:`~maelab.models.vit.Attention` on the attention kernel ``cpu_path`` ('maelab', 'flash' or 'math')."""

    cpu_path = "maelab"

    def attend(self, qkv: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        heads = self.num_heads
        on_cpu = qkv.device.type == "cpu"
        if self.cpu_path == "math" and on_cpu:
            return math_attention(qkv, heads, key_mask)
        if (self.cpu_path == "maelab" and on_cpu and qkv.dtype == torch.float32
                and qkv.shape[-1] // (3 * heads) in HEAD_DIMS):
            return small_attention(qkv, heads, key_mask)
        if (on_cpu and HAS_CPU_FLASH and key_mask is None and qkv.requires_grad and torch.is_grad_enabled()):
            return QKVAttention.apply(qkv, heads)
        return super().attend(qkv, key_mask)


def use_kernels(module: nn.Module, choice: Optional[Choice]) -> nn.Module:
    """Put the fast paths ``choice`` turns on into ``module`` (an MAE, an encoder), in place, and return it:
    its linears, blocks and attentions become the subclasses above (the same parameters and state dict). None
    (PyTorch's ops) leaves it as it is. Call once, when the model is built."""
    if choice is None:
        return module
    for layer in module.modules():
        if choice.fused_gemms and type(layer) is nn.Linear:
            layer.__class__ = FusedLinear
        elif choice.fused_gemms and type(layer) is Block and isinstance(layer.drop_path, nn.Identity):
            layer.__class__ = FusedBlock
        elif choice.attention != "torch" and type(layer) is Attention:
            layer.__class__ = CPUAttention
            layer.cpu_path = choice.attention
    setattr(module, CHOICE_ATTR, choice)
    return module


def kernels_in(module: nn.Module) -> Optional[Choice]:
    """The fast paths :func:`use_kernels` put into ``module``; None when it computes with PyTorch's ops."""
    return getattr(module, CHOICE_ATTR, None)


__all__ = ["CPUAttention", "FusedBlock", "FusedLinear", "HEAD_DIMS", "kernels_in", "use_kernels"]
