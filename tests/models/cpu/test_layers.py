"""The CPU's fast paths (drop-in layers) compute what the plain model's PyTorch ops compute, and are chosen once."""

import shutil

import pytest
import torch
from torch import nn

from maelab.masking import draw_mask
from maelab.models import build_mae
from maelab.models.cpu import kernels_for, kernels_in, use_kernels
from maelab.models.cpu import ops as cpu_ops
from maelab.models.cpu.choice import Choice
from maelab.models.cpu.layers import CPUAttention, FusedBlock, FusedLinear
from maelab.models.cpu.ops import fused_linear, fused_residual, math_attention
from maelab.models.vit import Attention, Block, sdpa_attention
from maelab.presets import PRESETS

FLASH = Choice("flash", True)  # the fast paths that need no build: fused linears and residuals, flash attention
needs_compiler = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                    reason="no C++ compiler: maelab's attention kernel cannot be built")


def grads(out, inputs):
    return torch.autograd.grad(out, inputs, torch.ones_like(out) * torch.linspace(-1, 1, out.shape[-1]))


def test_the_residual_is_x_plus_linear_of_h_with_one_fused_gemm():
    torch.manual_seed(0)
    linear = nn.Linear(24, 16)
    x = torch.randn(3, 5, 16, requires_grad=True)
    h = torch.randn(3, 5, 24, requires_grad=True)
    out = fused_residual(x, h, linear)
    assert type(out.grad_fn.next_functions[0][0]).__name__ == "AddmmBackward0"  # the add folded into the GEMM
    ref = x + linear(h)
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads(out, [x, h, linear.weight, linear.bias]), grads(ref, [x, h, linear.weight, linear.bias]),
                    strict=True):
        torch.testing.assert_close(a, b)


def test_the_residual_under_autocast_is_the_plain_sum():
    linear, x, h = nn.Linear(8, 8), torch.randn(2, 8), torch.randn(2, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused_residual(x, h, linear)
    torch.testing.assert_close(out.float(), x + linear(h), atol=0.05, rtol=0.02)


def test_blocks_with_stochastic_depth_keep_the_plain_forward():
    torch.manual_seed(0)
    plain, dropping = Block(16, 2, 32), Block(16, 2, 32, drop_path=0.5)
    use_kernels(nn.Sequential(plain, dropping), FLASH)
    assert type(plain) is FusedBlock and type(dropping) is Block  # chosen once, when the model is converted
    assert type(dropping.mlp.fc1) is FusedLinear and type(dropping.attn) is CPUAttention


def test_the_linear_adds_the_bias_after_the_gemm():
    torch.manual_seed(2)
    linear = nn.Linear(12, 20)
    h = torch.randn(4, 3, 12, requires_grad=True)
    out = fused_linear(h, linear)
    assert type(out.grad_fn.next_functions[0][0]).__name__ == "AddBackward0"  # mm, then the bias in place
    ref = linear(h)
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads(out, [h, linear.weight, linear.bias]), grads(ref, [h, linear.weight, linear.bias]),
                    strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("shape", [(4, 17, 128, 4), (3, 65, 64, 4), (2, 5, 48, 3)])
def test_training_attention_on_the_flash_kernels_matches_sdpa(shape):
    n, t, d, heads = shape
    gen = torch.Generator().manual_seed(0)
    qkv = torch.randn(n, t, 3 * d, generator=gen, requires_grad=True)
    attn = use_kernels(Attention(d, heads), FLASH)
    out = attn.attend(qkv)
    assert type(out.grad_fn).__name__ == "QKVAttentionBackward"  # the CPU path is the one taken
    ref = sdpa_attention(qkv, heads)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    (grad,), (ref_grad,) = grads(out, [qkv]), grads(ref, [qkv])
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-5)
    assert grad.is_contiguous()


@pytest.mark.parametrize("masked", [False, True])
def test_attention_by_two_matmuls_is_sdpa_in_values_and_gradients(masked, monkeypatch):
    gen = torch.Generator().manual_seed(3)
    qkv = torch.randn(3, 9, 3 * 24, generator=gen, requires_grad=True)
    keys = (torch.rand(3, 9, generator=gen) > 0.4) | (torch.arange(9) == 0) if masked else None
    attn = use_kernels(Attention(24, 3), Choice("math", False))
    with monkeypatch.context() as patched:  # the math path is the one taken: PyTorch's attention is never called
        patched.setattr(torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: pytest.fail("sdpa"))
        out = attn.attend(qkv, keys)
    ref = sdpa_attention(qkv, 3, keys)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(math_attention(qkv, 3, keys), out)
    (grad,), (ref_grad,) = grads(out, [qkv]), grads(ref, [qkv])
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-5)


def test_a_key_mask_and_inference_take_pytorchs_attention_and_hide_keys():
    gen = torch.Generator().manual_seed(1)
    qkv = torch.randn(2, 6, 3 * 16, generator=gen, requires_grad=True)
    keys = torch.tensor([[True, True, True, False, False, False], [True] * 6])
    attn = use_kernels(Attention(16, 2), FLASH)
    out = attn.attend(qkv, keys)
    assert type(out.grad_fn).__name__ != "QKVAttentionBackward"
    changed = qkv.detach().clone()
    changed[0, 3:, 16:] += 5.0  # sample 0 must not see keys 3..5
    torch.testing.assert_close(attn.attend(changed, keys)[0], out[0].detach(), atol=1e-6, rtol=0)


def test_kernels_are_chosen_once_per_device_precision_and_switch(monkeypatch):
    monkeypatch.setenv("MAELAB_CPU_KERNELS", "1")
    assert kernels_for("cuda", "bf16") is None  # PyTorch's ops: the plain model
    assert kernels_for("cpu", "bf16") is None  # autocast on the CPU: PyTorch's ops
    assert kernels_for("cpu", "fp32").fused_gemms
    monkeypatch.setenv("MAELAB_CPU_KERNELS", "0")
    assert kernels_for("cpu", "fp32") is None


@needs_compiler
@pytest.mark.parametrize("preset", ["keras", "micro"])
def test_an_mae_on_the_cpus_kernels_trains_as_one_on_pytorchs(preset, monkeypatch):
    """Same weights, same loss and gradients, and every attention of the step on maelab's kernel."""
    spec = PRESETS[preset]
    monkeypatch.setenv("MAELAB_CPU_KERNELS", "1")  # every fast path, whatever the timing says on this CPU
    kernels = kernels_for("cpu", "fp32")
    assert kernels.attention == "maelab"  # built on this machine
    torch.manual_seed(0)
    fast, plain = use_kernels(build_mae(spec), kernels), build_mae(spec)
    assert kernels_in(fast) == kernels and kernels_in(plain) is None
    assert {type(m) for m in fast.modules()} >= {FusedLinear, FusedBlock, CPUAttention}
    assert fast.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(fast.state_dict())
    imgs = torch.randn(6, 3, spec.img_size, spec.img_size)
    mask = draw_mask(6, spec.num_patches, 0.75, generator=torch.Generator().manual_seed(1))
    calls = []
    original = cpu_ops.SmallAttention.forward
    monkeypatch.setattr(cpu_ops.SmallAttention, "forward",
                        staticmethod(lambda ctx, *a: calls.append(1) or original(ctx, *a)))
    results = []
    for model in (fast, plain):
        loss = model(imgs, mask).loss
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters()]))
    assert len(calls) == spec.depth + spec.decoder_depth
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    for g, r in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


@needs_compiler
def test_an_mae_on_the_cpus_kernels_compiles_without_a_graph_break(monkeypatch):
    monkeypatch.setenv("MAELAB_CPU_KERNELS", "1")
    model = use_kernels(build_mae(PRESETS["micro"]), kernels_for("cpu", "fp32"))
    mask = draw_mask(2, 64, 0.75, generator=torch.Generator().manual_seed(0))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32), mask)
    torch._dynamo.reset()
    assert explained.graph_break_count == 0, explained.break_reasons


def test_an_mae_with_the_flash_path_and_fused_gemms_trains_as_the_plain_one():
    spec = PRESETS["micro"]
    torch.manual_seed(0)
    fast = use_kernels(build_mae(spec), FLASH)
    plain = build_mae(spec)
    plain.load_state_dict(fast.state_dict())
    imgs = torch.randn(4, 3, spec.img_size, spec.img_size)
    mask = draw_mask(4, spec.num_patches, 0.6, generator=torch.Generator().manual_seed(2))
    losses, grads_of = [], []
    for model in (fast, plain):
        loss = model(imgs, mask).loss
        loss.backward()
        losses.append(loss.detach())
        grads_of.append([p.grad for p in model.parameters()])
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for g, r in zip(*grads_of, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
