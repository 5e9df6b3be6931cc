"""The model's numerical kernels behind one interface, chosen once when a model is built.

:class:`TorchKernels` is PyTorch's own ops: any device and dtype, traceable by torch.compile and dispatch modes
(FlopCounterMode). The blocks call ``kernels.linear``, ``kernels.residual`` and ``kernels.attention`` and read as
the maths; :mod:`maelab.models.cpu` provides the same interface with maelab's CPU fast paths, and
:func:`maelab.models.cpu.kernels_for` picks one for a device and precision.
"""

from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn


def split_heads(qkv: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """qkv [N, T, 3 * D] -> q, k, v, each a [N, heads, T, D / heads] view."""
    n, t, d3 = qkv.shape
    return qkv.view(n, t, 3, heads, d3 // (3 * heads)).permute(2, 0, 3, 1, 4).unbind(0)


def sdpa_attention(qkv: Tensor, heads: int, key_mask: Optional[Tensor] = None) -> Tensor:
    """Multi-head softmax attention (``F.scaled_dot_product_attention``): qkv [N, T, 3 * D] -> [N, T, D].

    ``key_mask`` [N, T] bool hides the keys where False."""
    n, t, d3 = qkv.shape
    q, k, v = split_heads(qkv, heads)
    keys = None if key_mask is None else key_mask[:, None, None, :]  # [N, 1, 1, T], True = attend
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keys).transpose(1, 2).reshape(n, t, d3 // 3)


class TorchKernels:
    """PyTorch's ops: ``linear(h)``, ``x + drop_path(linear(h))`` and scaled-dot-product attention."""

    name = "torch"

    def linear(self, h: Tensor, linear: nn.Linear) -> Tensor:
        """linear(h): h [..., D_in] -> [..., D_out]."""
        return linear(h)

    def residual(self, x: Tensor, h: Tensor, linear: nn.Linear, drop_path: nn.Module) -> Tensor:
        """The residual branch added to the stream: x [..., D_out] + drop_path(linear(h [..., D_in]))."""
        return x + drop_path(linear(h))

    def attention(self, qkv: Tensor, heads: int, key_mask: Optional[Tensor] = None) -> Tensor:
        """qkv [N, T, 3 * D] -> [N, T, D] (:func:`sdpa_attention`)."""
        return sdpa_attention(qkv, heads, key_mask)


TORCH = TorchKernels()

__all__ = ["TORCH", "TorchKernels", "sdpa_attention", "split_heads"]
