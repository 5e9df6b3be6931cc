import pytest
import torch
from torch import nn

from maelab.models.vit import Block, ViTEncoder


def test_block_with_drop_path_keeps_the_plain_residuals_and_agrees_in_eval():
    torch.manual_seed(1)
    plain, dropping = Block(16, 2, 32), Block(16, 2, 32, drop_path=0.5)
    dropping.load_state_dict(plain.state_dict())
    x = torch.randn(2, 7, 16)
    dropping.eval()  # no drop in eval: both blocks compute the same function
    torch.testing.assert_close(plain(x), dropping(x), rtol=1e-5, atol=1e-6)


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


def test_attention_weights_are_what_the_block_weighs_its_values_with():
    encoder, x = _encoder(), torch.randn(2, 17, 32)
    attn = encoder.blocks[1].attn
    weights = attn.weights(x)  # [2, heads, 17, 17]
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 17))
    v = attn.qkv(x).view(2, 17, 3, 2, 16)[:, :, 2].transpose(1, 2)  # [2, heads, 17, 16]
    by_hand = (weights @ v).transpose(1, 2).reshape(2, 17, 32)
    torch.testing.assert_close(by_hand, attn.attend(attn.qkv(x)), rtol=1e-5, atol=1e-6)  # the forward's own attention


@pytest.mark.parametrize("registers", [0, 2])
def test_forward_attention_is_the_asked_blocks_on_its_own_input(registers):
    encoder, imgs = _encoder(registers), torch.randn(2, 3, 16, 16)
    tokens = 1 + registers + 16
    last = encoder.forward_attention(imgs)
    assert last.shape == (2, 2, tokens, tokens)
    x = torch.cat([encoder.cls_token.expand(2, -1, -1), *([encoder.registers.expand(2, -1, -1)] if registers else []),
                   encoder.patch_embed(imgs) + encoder.pos_embed], dim=1)
    x = encoder.blocks[1](encoder.blocks[0](x))
    torch.testing.assert_close(last, encoder.blocks[2].attn.weights(encoder.blocks[2].norm1(x)))
    assert not torch.allclose(encoder.forward_attention(imgs, 0), last)
