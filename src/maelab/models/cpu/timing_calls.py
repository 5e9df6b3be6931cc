"""The calls :func:`maelab.models.cpu.choice.choose` times: one stack's attention and its block's four GEMMs, each
on maelab's fast path and on PyTorch's op, forward (and backward when training), on inputs of the stack's shapes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from maelab.models.cpu.layers import fused_linear, fused_residual
from maelab.models.cpu.ops import QKVAttention, small_attention
from maelab.models.vit import sdpa_attention

Call = Callable[[], None]


def _run(forward: Callable[[], Tensor], training: bool) -> Call:
    def call() -> None:
        if training:
            forward().sum().backward()
        else:
            with torch.no_grad():
                forward()
    return call


def attention_calls(stack, batch: int, training: bool, names: tuple[str, ...], gen: torch.Generator) -> dict[str, Call]:
    """{name: call} for each attention in ``names`` ('maelab', 'flash', 'torch') at ``stack``'s shapes."""
    qkv = torch.randn(batch, stack.tokens, 3 * stack.dim, generator=gen).requires_grad_(training)
    impls = {"maelab": small_attention, "flash": QKVAttention.apply, "torch": sdpa_attention}
    return {name: _run(lambda f=impls[name]: f(qkv, stack.heads), training) for name in names}


def gemm_calls(stack, batch: int, training: bool, gen: torch.Generator) -> dict[str, Call]:
    """{'fused': call, 'torch': call}: a block's qkv and fc1 linears and its proj and fc2 residual branches on the
    CPU kernels' fused GEMMs and on PyTorch's ops, at ``stack``'s shapes."""
    rows, d, m = batch * stack.tokens, stack.dim, stack.mlp_dim
    layers = [nn.Linear(d, 3 * d), nn.Linear(d, d), nn.Linear(d, m), nn.Linear(m, d)]
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.02)
            layer.bias.zero_()
    x = torch.randn(1, rows, d, generator=gen).requires_grad_(training)
    hidden = torch.randn(1, rows, m, generator=gen).requires_grad_(training)

    def block(linear: Callable[[Tensor, nn.Linear], Tensor], residual: Callable[[Tensor, Tensor, nn.Linear], Tensor]
              ) -> Call:
        qkv, proj, fc1, fc2 = layers

        def forward() -> Tensor:
            a = linear(x, qkv)[..., :d]
            y = residual(x, a, proj)
            h = linear(y, fc1)
            return residual(y, hidden * h, fc2)
        return _run(forward, training)

    return {"fused": block(fused_linear, fused_residual),
            "torch": block(lambda h, layer: layer(h), lambda x, h, layer: x + layer(h))}
