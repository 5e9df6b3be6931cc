import pytest
import torch
import torch.nn.functional as F

from maelab.models.attention import qkv_attention, split_heads


def reference(qkv, heads, key_mask=None):
    """Plain autograd through F.scaled_dot_product_attention on views of the projection."""
    n, t, d3 = qkv.shape
    q, k, v = split_heads(qkv, heads)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(n, t, d3 // 3)


@pytest.fixture
def no_kernel(monkeypatch):
    """PyTorch's kernels only: maelab's own CPU kernel is tested in test_cpu_kernels.py."""
    monkeypatch.setenv("MAELAB_CPU_KERNELS", "0")


@pytest.mark.parametrize("shape", [(4, 17, 128, 4), (3, 65, 64, 4), (2, 5, 48, 3)])
def test_cpu_backward_matches_autograd_through_sdpa(shape, no_kernel):
    n, t, d, heads = shape
    gen = torch.Generator().manual_seed(0)
    qkv = torch.randn(n, t, 3 * d, generator=gen, requires_grad=True)
    grad_out = torch.randn(n, t, d, generator=gen)
    out = qkv_attention(qkv, heads)
    assert type(out.grad_fn).__name__ == "QKVAttentionBackward"  # the CPU path is the one taken
    (grad,) = torch.autograd.grad(out, qkv, grad_out)
    ref = reference(qkv, heads)
    (ref_grad,) = torch.autograd.grad(ref, qkv, grad_out)
    assert torch.allclose(out, ref, atol=1e-6) and torch.allclose(grad, ref_grad, atol=1e-6)
    assert grad.shape == qkv.shape and grad.is_contiguous()


def test_key_mask_and_inference_take_the_generic_path_and_hide_keys(no_kernel):
    gen = torch.Generator().manual_seed(1)
    qkv = torch.randn(2, 6, 3 * 16, generator=gen, requires_grad=True)
    keys = torch.tensor([[True, True, True, False, False, False], [True] * 6])
    out = qkv_attention(qkv, 2, keys)
    assert type(out.grad_fn).__name__ != "QKVAttentionBackward"
    assert torch.allclose(out, reference(qkv, 2, keys))
    # sample 0 must not see keys 3..5: changing them (their k and v) leaves its outputs unchanged
    changed = qkv.detach().clone()
    changed[0, 3:, 16:] += 5.0
    assert torch.allclose(qkv_attention(changed, 2, keys)[0], out[0].detach(), atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(qkv_attention(qkv, 2), reference(qkv, 2))
