"""The attention ops of maelab's CPU fast path: its own kernel (``csrc/small_attention.cpp``) and PyTorch's fused
CPU flash kernels with a cheaper backward layout.

``torch.ops.maelab.small_attention_forward`` / ``_backward`` are defined in C++; :func:`register_fakes` gives them
shape functions, so that torch.compile and other tracers see them as ops instead of stepping around them.

``F.scaled_dot_product_attention`` on views of the fused projection returns q, k and v's gradients as three
[N, heads, T, d] tensors; autograd then stacks them ([3, N, heads, T, d], one copy) and permutes them back to the
projection's [N, T, 3, heads, d] layout (a second copy). :class:`QKVAttention` calls the same fused kernels
(``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward) and writes the three gradients straight
into that layout: one copy instead of two, bit-identical results, 15-30% off the attention's forward + backward at
the keras preset's sizes (docs/performance.md).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from maelab.models.vit import split_heads

_aten = torch.ops.aten
HAS_CPU_FLASH = hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu") and hasattr(
    _aten, "_scaled_dot_product_flash_attention_for_cpu_backward")
_registered = {"fakes": False}


def register_fakes() -> None:
    """Shape functions of the kernel's two ops (once, after the library is loaded): outputs [N, T, D] and the
    log-sum-exp [N, heads, T] of the forward, dqkv like qkv for the backward."""
    if _registered["fakes"]:
        return

    @torch.library.register_fake("maelab::small_attention_forward")
    def _forward(qkv: Tensor, heads: int, key_mask: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        n, t, d3 = qkv.shape
        return qkv.new_empty(n, t, d3 // 3), qkv.new_empty(n, heads, t)

    @torch.library.register_fake("maelab::small_attention_backward")
    def _backward(grad: Tensor, qkv: Tensor, out: Tensor, lse: Tensor, heads: int,
                  key_mask: Optional[Tensor]) -> Tensor:
        return torch.empty_like(qkv)

    _registered["fakes"] = True


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
    """Multi-head softmax attention on maelab's CPU kernel: qkv [N, T, 3 * D] float32 -> [N, T, D] (head dims
    16, 32, 48, 64; the kernel must be built: :func:`maelab.models.cpu.build.available`)."""
    if qkv.requires_grad and torch.is_grad_enabled():
        return SmallAttention.apply(qkv, heads, key_mask)
    keys = None if key_mask is None else key_mask.contiguous()
    return torch.ops.maelab.small_attention_forward(qkv.contiguous(), heads, keys)[0]


class QKVAttention(torch.autograd.Function):
    """Softmax attention on the CPU's fused flash kernels: qkv [N, T, 3 * D] -> [N, T, D] (no key mask)."""

    @staticmethod
    def forward(ctx, qkv: Tensor, heads: int) -> Tensor:  # type: ignore[override]
        q, k, v = split_heads(qkv, heads)
        out, logsumexp = _aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
        ctx.save_for_backward(q, k, v, out, logsumexp)
        n, _, t, d = out.shape
        return out.transpose(1, 2).reshape(n, t, heads * d)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        q, k, v, out, logsumexp = ctx.saved_tensors
        n, h, t, d = q.shape
        grad_out = grad.reshape(n, t, h, d).transpose(1, 2)
        dq, dk, dv = _aten._scaled_dot_product_flash_attention_for_cpu_backward(
            grad_out, q, k, v, out, logsumexp, 0.0, False)
        # one copy, straight into the projection's [N, T, 3, heads, d] layout
        dqkv = torch.stack([dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2)], dim=2)
        return dqkv.view(n, t, 3 * h * d), None


__all__ = ["HAS_CPU_FLASH", "QKVAttention", "SmallAttention", "register_fakes", "small_attention"]
