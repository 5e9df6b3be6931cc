"""The ops of maelab's CPU fast path: its own attention kernel (``csrc/small_attention.cpp``), PyTorch's fused
CPU flash kernels with a cheaper backward layout, and the linears with the bias (and the residual) added in place
(:func:`fused_linear`, :func:`fused_residual`).

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
from torch import Tensor, nn

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


def math_attention(qkv: Tensor, heads: int, key_mask: Optional[Tensor] = None) -> Tensor:
    """softmax(q kᵀ / √d) v written as two batched matmuls around a softmax: qkv [N, T, 3 * D] -> [N, T, D];
    ``key_mask`` [N, T] bool hides the keys where False.

    Why by hand: at the few tokens of an MAE on small images (17 in the keras preset's encoder, 65 in its decoder)
    PyTorch's fused CPU flash kernel spends its time on its tiling, not on the arithmetic. On an AMD EPYC (Zen 3,
    AVX2, 2 threads) forward + backward took 12.7 against 28.1 ms at [256, 17, 384] with 4 heads and 45.6 against
    73.4 ms at [256, 65, 192]; at 257 tokens the flash kernel is 2x faster (docs/performance.md). So it is used
    only where :mod:`maelab.models.cpu.choice` times it faster. q is scaled before the product (T x d values, not
    T x T)."""
    n, t, d3 = qkv.shape
    q, k, v = split_heads(qkv, heads)
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1))  # [N, heads, T, T]
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return torch.matmul(scores.softmax(-1), v).transpose(1, 2).reshape(n, t, d3 // 3)


def _fusable(x: Tensor, h: Tensor, linear: nn.Linear) -> bool:
    """Whether the in-place bias paths apply: CPU tensors of one dtype, no autocast, a bias."""
    return (x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
            and h.dtype == x.dtype == linear.weight.dtype and linear.bias is not None)


def fused_linear(h: Tensor, linear: nn.Linear) -> Tensor:
    """linear(h) as ``mm`` then the bias added in place: h [..., D_in] -> [..., D_out]."""
    if not _fusable(h, h, linear):
        return nn.functional.linear(h, linear.weight, linear.bias)
    out = h.reshape(-1, h.shape[-1]) @ linear.weight.t()
    return out.add_(linear.bias).view(*h.shape[:-1], out.shape[-1])


def fused_residual(x: Tensor, h: Tensor, linear: nn.Linear) -> Tensor:
    """x + linear(h) as one in-place ``addmm_`` into x + bias: x [..., D_out], h [..., D_in] -> [..., D_out]."""
    if not _fusable(x, h, linear):
        return x + linear(h)
    out = x.reshape(-1, x.shape[-1]) + linear.bias  # a new 2-D tensor: addmm_ on it, not on a view
    return out.addmm_(h.reshape(-1, h.shape[-1]), linear.weight.t()).view(x.shape)


__all__ = ["HAS_CPU_FLASH", "QKVAttention", "SmallAttention", "fused_linear", "fused_residual", "math_attention",
           "register_fakes", "small_attention"]
