import pytest
import torch
from torch import nn

from maelab.models.vit import Block, ViTEncoder, bias_linear, residual_linear


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


def _encoder(registers: int = 0) -> ViTEncoder:
    torch.manual_seed(3)
    encoder = ViTEncoder(16, 4, 32, 3, 2, 64, registers=registers).eval()
    for p in encoder.parameters():  # non-trivial norms, tokens and biases: a mix-up of any of them shows
        nn.init.normal_(p, std=0.2)
    return encoder


@pytest.mark.parametrize("registers", [0, 2])
def test_intermediates_are_the_outputs_of_a_manual_loop_over_the_blocks(registers):
    encoder, imgs = _encoder(registers), torch.randn(2, 3, 16, 16)
    x = torch.cat([encoder.cls_token.expand(2, -1, -1),
                   *([encoder.registers.expand(2, -1, -1)] if registers else []),
                   encoder.patch_embed(imgs) + encoder.pos_embed], dim=1)
    manual = []
    for block in encoder.blocks:
        x = block(x)
        manual.append(torch.cat([x[:, :1], x[:, 1 + registers:]], dim=1))  # cls + patches, registers dropped
    got = encoder.forward_intermediates(imgs, [2, 0, 1])
    assert [t.shape for t in got] == [(2, 1 + 16, 32)] * 3
    for out, i in zip(got, [2, 0, 1], strict=True):  # in the order asked
        torch.testing.assert_close(out, manual[i], rtol=0, atol=0)
    assert not torch.allclose(got[1], got[2])


@pytest.mark.parametrize("registers", [0, 2])
def test_the_last_block_after_the_final_norm_is_forward_features(registers):
    encoder, imgs = _encoder(registers), torch.randn(3, 3, 16, 16)
    raw, normed = encoder.forward_intermediates(imgs, [2])[0], encoder.forward_intermediates(imgs, [2], norm=True)[0]
    assert torch.equal(normed, encoder.forward_features(imgs))
    assert torch.equal(encoder.norm(raw), encoder.forward_features(imgs))
    assert not torch.allclose(raw, normed)  # the raw output is before the norm


def test_intermediates_stop_after_the_deepest_block_asked_for():
    encoder, ran = _encoder(), []
    for i, block in enumerate(encoder.blocks):
        block.register_forward_hook(lambda *_, i=i: ran.append(i))
    encoder.forward_intermediates(torch.randn(1, 3, 16, 16), [1])
    assert ran == [0, 1]


@pytest.mark.parametrize("indices", [[3], [-1], []])
def test_a_block_index_outside_the_encoder_is_refused(indices):
    with pytest.raises(IndexError, match="3 blocks"):
        _encoder().forward_intermediates(torch.randn(1, 3, 16, 16), indices)
