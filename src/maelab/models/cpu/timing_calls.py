"""The calls :func:`maelab.models.cpu.choice.choose` times: one stack's attention and its block's four GEMMs, each
on maelab's fast path and on PyTorch's op, forward (and backward when training), on inputs of the stack's shapes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from maelab.models.cpu.ops import QKVAttention, fused_linear, fused_residual, math_attention, small_attention
from maelab.models.vit import sdpa_attention

Call = Callable[[], None]


def timed_call(forward: Callable[[], Tensor], training: bool) -> Call:
    """One timed call: ``forward()``, and in training its backward from a dense gradient. Not ``.sum().backward()``:
    that gradient is a stride-0 expanded tensor, on which the matmuls' backward takes a slow path that training never
    sees (it made the two-matmul attention look 1.4x slower than PyTorch's where it is 2.4x faster)."""
    grads: list[Tensor] = []  # drawn at the first (untimed, warm-up) call, then reused

    def call() -> None:
        if not training:
            with torch.no_grad():
                forward()
            return
        out = forward()
        if not grads:
            grads.append(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)))
        out.backward(grads[0])
    return call


def attention_calls(stack, batch: int, training: bool, names: tuple[str, ...], gen: torch.Generator) -> dict[str, Call]:
    """{name: call} for each attention in ``names`` ('maelab', 'flash', 'math', 'torch') at ``stack``'s shapes."""
    qkv = torch.randn(batch, stack.tokens, 3 * stack.dim, generator=gen).requires_grad_(training)
    impls = {"maelab": small_attention, "flash": QKVAttention.apply, "math": math_attention, "torch": sdpa_attention}
    return {name: timed_call(lambda f=impls[name]: f(qkv, stack.heads), training) for name in names}


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
        return timed_call(forward, training)

    return {"fused": block(fused_linear, fused_residual),
            "torch": block(lambda h, layer: layer(h), lambda x, h, layer: x + layer(h))}
