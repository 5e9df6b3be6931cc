"""maelab's CPU attention kernel: built here, equal to PyTorch's attention forward and backward, traceable."""

import os
import shutil
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from maelab.models.cpu import build as cpu_kernels
from maelab.models.cpu.ops import small_attention
from maelab.models.vit import split_heads

pytestmark = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                reason="no C++ compiler: maelab uses PyTorch's attention kernels")


def reference(qkv, heads, key_mask=None):
    n, t, d3 = qkv.shape
    q, k, v = split_heads(qkv, heads)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(n, t, d3 // 3)


def forward_backward(fn, qkv, heads, grad_out, key_mask=None):
    qkv = qkv.detach().requires_grad_(True)
    out = fn(qkv, heads, key_mask)
    (grad,) = torch.autograd.grad(out, qkv, grad_out)
    return out.detach(), grad


def test_kernel_builds_on_this_machine():
    assert cpu_kernels.available(), "the CPU attention kernel did not build: see the warning above"


# (N, T, heads, head dim): keras encoder (17 tokens, d 32) and decoder (65, d 16), vit_tiny (d 64), one token,
# whole vector multiples of keys (16, 80), several key blocks (130), odd head dims (generic path: 8, 24)
SHAPES = [(4, 17, 4, 32), (3, 65, 4, 16), (2, 17, 3, 64), (2, 1, 2, 16), (2, 16, 2, 48), (2, 80, 1, 16),
          (1, 130, 2, 32), (2, 9, 2, 8), (2, 7, 3, 24)]


@pytest.mark.parametrize("n,t,heads,d", SHAPES)
@pytest.mark.parametrize("masked", [False, True])
def test_float32_forward_and_backward_match_sdpa(n, t, heads, d, masked):
    gen = torch.Generator().manual_seed(t * 100 + d)
    qkv = torch.randn(n, t, 3 * heads * d, generator=gen) * 2
    grad_out = torch.randn(n, t, heads * d, generator=gen).transpose(0, 1).contiguous().transpose(0, 1)  # strided
    keys = None
    if masked:
        keys = torch.rand(n, t, generator=gen) > 0.4
        keys[:, 0] = True  # every sample keeps a key (the cls token in the model)
    out, grad = forward_backward(small_attention, qkv, heads, grad_out, keys)
    sdpa_out, sdpa_grad = forward_backward(reference, qkv, heads, grad_out, keys)
    exact_out, exact_grad = forward_backward(reference, qkv.double(), heads, grad_out.double(), keys)
    assert out.shape == sdpa_out.shape and grad.shape == qkv.shape
    # as close to the float64 result as PyTorch's float32 kernels are (within 2x, or 1e-6)
    for mine, theirs, exact in ((out, sdpa_out, exact_out), (grad, sdpa_grad, exact_grad)):
        error, sdpa_error = (mine.double() - exact).abs().max(), (theirs.double() - exact).abs().max()
        assert error <= 2 * sdpa_error + 1e-6, (error, sdpa_error)


def test_hidden_keys_have_no_influence():
    gen = torch.Generator().manual_seed(3)
    qkv = torch.randn(2, 20, 3 * 2 * 16, generator=gen)
    keys = torch.ones(2, 20, dtype=torch.bool)
    keys[0, 12:] = False
    changed = qkv.clone()
    changed[0, 12:, 32:] += 5.0  # sample 0's hidden keys and values
    out = small_attention(qkv.requires_grad_(), 2, keys)
    out_changed = small_attention(changed.requires_grad_(), 2, keys)
    assert torch.equal(out[0], out_changed[0]) and not torch.equal(out[1], out_changed[1] + 1)


def test_float64_gradcheck():
    gen = torch.Generator().manual_seed(4)
    qkv = torch.randn(2, 5, 3 * 2 * 4, dtype=torch.float64, generator=gen, requires_grad=True)
    keys = torch.tensor([[True, True, False, True, False], [True] * 5])
    assert torch.autograd.gradcheck(lambda x: small_attention(x, 2), (qkv,))
    assert torch.autograd.gradcheck(lambda x: small_attention(x, 2, keys), (qkv,))


def test_results_do_not_depend_on_threads_or_batch_company():
    gen = torch.Generator().manual_seed(5)
    qkv = torch.randn(8, 65, 3 * 64, generator=gen)
    grad_out = torch.randn(8, 65, 64, generator=gen)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = forward_backward(small_attention, qkv, 4, grad_out)
        torch.set_num_threads(2)
        two = forward_backward(small_attention, qkv, 4, grad_out)
    finally:
        torch.set_num_threads(threads)
    half = forward_backward(small_attention, qkv[:4], 4, grad_out[:4])
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    assert torch.equal(one[0][:4], half[0]) and torch.equal(one[1][:4], half[1])


def test_a_source_that_does_not_build_falls_back_with_one_warning(tmp_path, monkeypatch):
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cpu_kernels.build(broken, name="maelab_broken_test") is False
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "could not be built" in messages[0] and cpu_kernels.ENV in messages[0]


@pytest.mark.parametrize("seconds,said", [(2.6, True), (0.0, False)])
def test_a_build_that_takes_a_while_says_so_when_it_starts(tmp_path, monkeypatch, capfd, seconds, said):
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    heard = []
    monkeypatch.setattr(cpp_extension, "load", lambda **kwargs: (time.sleep(seconds), heard.append(capfd.readouterr())))
    cpu_kernels.build(name="maelab_slow_build_test")
    assert ("building the CPU attention kernel (once per checkout" in heard[0].err) == said  # before it ended


def test_a_lock_left_by_a_killed_build_is_cleared_when_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    from torch.utils.cpp_extension import _get_build_directory

    lock = Path(_get_build_directory("maelab_lock_test", verbose=False)) / "lock"
    lock.touch()
    cpu_kernels.clear_stale_lock("maelab_lock_test")
    assert lock.exists()  # a fresh lock: another process may be building right now
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    cpu_kernels.clear_stale_lock("maelab_lock_test")
    assert not lock.exists()


def test_a_build_killed_mid_way_leaves_no_lock_that_blocks_the_next(tmp_path, monkeypatch):
    """A process killed while building (its lock file left behind) does not hang the next build: a real
    subprocess takes the lock, creates torch's lock file as its loader does, and is SIGKILLed."""
    import signal
    import subprocess
    import sys

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    code = ("import sys, time; from maelab.models.cpu import build as b\n"
            "with b.build_lock('maelab_lock_test'):\n"
            "    b._baton('maelab_lock_test').touch(); print('building', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)})
    assert proc.stdout.readline().strip() == "building"
    baton = cpu_kernels._baton("maelab_lock_test")
    assert baton.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    started = time.perf_counter()
    with cpu_kernels.build_lock("maelab_lock_test"):
        assert not baton.exists()  # the killed build's lock file is gone: torch's loader will not wait on it
    assert time.perf_counter() - started < 10


def test_inference_runs_on_the_kernel_without_autograd():
    qkv = torch.randn(3, 65, 3 * 128)
    with torch.no_grad():
        out = small_attention(qkv, 4)
    assert out.grad_fn is None
    torch.testing.assert_close(out, reference(qkv, 4), rtol=1e-5, atol=2e-6)


def test_the_kernels_ops_have_shapes_for_tracers():
    """Registered fake (meta) functions: torch.compile and fake tensors see the op, no check steps around it."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    assert cpu_kernels.available()
    with FakeTensorMode() as fake:
        qkv = fake.from_tensor(torch.randn(2, 17, 3 * 128))
        out, lse = torch.ops.maelab.small_attention_forward(qkv, 4, None)
        dqkv = torch.ops.maelab.small_attention_backward(out, qkv, out, lse, 4, None)
    assert (out.shape, lse.shape, dqkv.shape) == ((2, 17, 128), (2, 4, 17), (2, 17, 384))
