import torch
from torch import nn

from maelab.models.vit import Block, bias_linear, residual_linear


def test_residual_linear_is_x_plus_linear_of_h_with_one_fused_gemm():
    torch.manual_seed(0)
    linear = nn.Linear(24, 16)
    x = torch.randn(3, 5, 16, requires_grad=True)
    h = torch.randn(3, 5, 24, requires_grad=True)
    out = residual_linear(x, h, linear)
    assert type(out.grad_fn.next_functions[0][0]).__name__ == "AddmmBackward0"  # the add folded into the GEMM
    ref = x + linear(h)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, h, linear.weight, linear.bias], g)
    ref_grads = torch.autograd.grad(ref, [x, h, linear.weight, linear.bias], g)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_residual_linear_under_autocast_is_the_plain_sum():
    linear = nn.Linear(8, 8)
    x, h = torch.randn(2, 8), torch.randn(2, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = residual_linear(x, h, linear)
    assert type(out.grad_fn).__name__ == "AddBackward0" if out.grad_fn is not None else True
    torch.testing.assert_close(out.float(), x + linear(h), atol=0.05, rtol=0.02)


def test_block_with_drop_path_keeps_the_plain_residuals_and_agrees_in_eval():
    torch.manual_seed(1)
    plain, dropping = Block(16, 2, 32), Block(16, 2, 32, drop_path=0.5)
    dropping.load_state_dict(plain.state_dict())
    x = torch.randn(2, 7, 16)
    dropping.eval()  # no drop in eval: both blocks compute the same function
    torch.testing.assert_close(plain(x), dropping(x), rtol=1e-5, atol=1e-6)


def test_bias_linear_is_linear_with_the_bias_added_after_the_gemm():
    torch.manual_seed(2)
    linear = nn.Linear(12, 20)
    h = torch.randn(4, 3, 12, requires_grad=True)
    out = bias_linear(h, linear)
    assert type(out.grad_fn.next_functions[0][0]).__name__ == "AddBackward0"  # mm, then the bias in place
    ref = linear(h)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, [h, linear.weight, linear.bias], g),
                    torch.autograd.grad(ref, [h, linear.weight, linear.bias], g), strict=True):
        torch.testing.assert_close(a, b)
