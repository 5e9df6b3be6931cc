"""Each CPU fast path is used only where it is timed faster than PyTorch's op at the model's shapes on this CPU,
once per CPU, thread count and shapes (cached), and a run resumes with the paths it trained with."""

import pytest
import torch

from maelab.config import load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.pretrain import pretrain, resume
from maelab.models.cpu import cache as choice_cache
from maelab.models.cpu import kernels as cpu_kernels
from maelab.models.cpu import kernels_for, timing_calls
from maelab.models.cpu.choice import Choice, choose, mae_workload
from maelab.presets import PRESETS
from tests.conftest import TINY

MICRO = mae_workload(PRESETS["micro"], batch=8, mask_ratio=0.75)


def timer_of(seconds):
    """A timer that says each call took ``seconds[name]`` (attention calls have 'maelab'/'flash', GEMMs 'fused')."""
    def timer(calls):
        kind = "gemm" if "fused" in calls else "attention"
        return {name: seconds[kind][name] for name in calls}
    return timer


@pytest.fixture
def auto(monkeypatch, tmp_path):
    """MAELAB_CPU_KERNELS unset (the default: timed) and the cache in a fresh file."""
    monkeypatch.delenv("MAELAB_CPU_KERNELS", raising=False)
    monkeypatch.setattr(choice_cache, "cache_file", lambda: tmp_path / "choices.json")


def test_paths_slower_than_pytorchs_are_not_used():
    slower = {"attention": {"maelab": 2.0, "flash": 1.5, "torch": 1.0}, "gemm": {"fused": 1.2, "torch": 1.0}}
    choice = choose(MICRO, ("maelab", "flash", "torch"), timer_of(slower))
    assert (choice.attention, choice.fused_gemms) == ("torch", False)
    assert choice.speedups["maelab"] == 0.5 and choice.speedups["fused"] == pytest.approx(1 / 1.2, abs=1e-3)


def test_the_fastest_path_that_beats_pytorchs_by_the_margin_is_used():
    faster = {"attention": {"maelab": 0.5, "flash": 0.8, "torch": 1.0}, "gemm": {"fused": 0.9, "torch": 1.0}}
    choice = choose(MICRO, ("maelab", "flash", "torch"), timer_of(faster))
    assert (choice.attention, choice.fused_gemms) == ("maelab", True)
    within_noise = {"attention": {"maelab": 0.99, "flash": 0.985, "torch": 1.0}, "gemm": {"fused": 0.99, "torch": 1.0}}
    choice = choose(MICRO, ("maelab", "flash", "torch"), timer_of(within_noise))
    assert (choice.attention, choice.fused_gemms) == ("torch", False)


def test_the_real_timing_runs_every_candidate_and_leaves_the_global_rng_alone():
    torch.manual_seed(3)
    before = torch.get_rng_state()
    candidates = cpu_kernels.candidates(MICRO, built=False)
    choice = choose(MICRO, candidates)
    assert torch.equal(torch.get_rng_state(), before)  # a run's weights are drawn as without the timing
    assert choice.attention in candidates and set(choice.speedups) == {*candidates, "fused"} - {"torch"}
    assert all(v > 0 for v in choice.speedups.values())


def test_a_choice_is_timed_once_then_cached_per_shapes_and_threads(auto, monkeypatch, capsys):
    timed = []
    monkeypatch.setattr(cpu_kernels, "choose", lambda w, c: timed.append(w) or Choice("torch", True, "measured"))
    first = kernels_for("cpu", "fp32", MICRO)
    assert first.how == "measured" and len(timed) == 1
    assert "CPU kernels timed at this model's shapes" in capsys.readouterr().err
    again = kernels_for("cpu", "fp32", MICRO)
    assert len(timed) == 1 and again.how == "measured before, cached"
    assert (again.attention, again.fused_gemms) == (first.attention, first.fused_gemms)
    kernels_for("cpu", "fp32", mae_workload(PRESETS["keras"], batch=8, mask_ratio=0.75))
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        kernels_for("cpu", "fp32", MICRO)
    finally:
        torch.set_num_threads(threads)
    assert len(timed) == 3


def test_the_switch_turns_every_path_off_or_on_without_timing(auto, monkeypatch):
    monkeypatch.setattr(cpu_kernels, "choose", lambda *a: pytest.fail("timed"))
    monkeypatch.setenv("MAELAB_CPU_KERNELS", "0")
    assert kernels_for("cpu", "fp32", MICRO) is None  # PyTorch's ops
    monkeypatch.setenv("MAELAB_CPU_KERNELS", "1")
    forced = kernels_for("cpu", "fp32", MICRO)
    assert forced.fused_gemms and forced.attention in ("maelab", "flash") and "MAELAB_CPU_KERNELS=1" in forced.how
    monkeypatch.delenv("MAELAB_CPU_KERNELS")
    assert kernels_for("cpu", "fp32") is None  # no shapes to time at: PyTorch's ops
    assert kernels_for("cpu", "bf16", MICRO) is None


def test_a_run_says_and_records_its_cpu_kernels_and_its_resume_keeps_them(auto, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cpu_kernels, "choose", lambda w, c: Choice("flash", False, "measured", {"flash": 1.2}))
    out = tmp_path / "run"
    pretrain(load_config(None, [*TINY, "optim.epochs=2", "train.stop_after_epochs=1", "train.tensorboard=false",
                                f"out_dir={out}"]))
    assert "CPU kernels: flash attention with one copy fewer (1.20x PyTorch's), PyTorch's GEMMs" in \
        capsys.readouterr().err
    recorded = load_checkpoint(checkpoint_path(out))["cpu_kernels"]
    assert (recorded["attention"], recorded["fused_gemms"]) == ("flash", False)
    monkeypatch.setattr(choice_cache, "cache_file", lambda: tmp_path / "another_cache.json")
    monkeypatch.setattr(cpu_kernels, "choose", lambda w, c: Choice("torch", True, "measured"))  # this CPU now
    resume(out, [])
    assert "flash attention with one copy fewer (1.20x PyTorch's), PyTorch's GEMMs; as recorded in the run's " \
        "checkpoint" in capsys.readouterr().err
    assert load_checkpoint(checkpoint_path(out))["cpu_kernels"]["attention"] == "flash"


def test_the_timing_backpropagates_a_dense_gradient_as_training_does():
    """A stride-0 gradient (``.sum().backward()``) sends the matmuls' backward down a slow path training never takes:
    it made the two-matmul attention look 1.4x slower than PyTorch's where it is 2.4x faster."""
    seen = []
    x = torch.randn(4, 3, requires_grad=True)

    def forward():
        y = x * 2
        y.register_hook(seen.append)
        return y

    call = timing_calls.timed_call(forward, training=True)
    call()
    call()
    assert len(seen) == 2 and all(0 not in g.stride() for g in seen) and torch.equal(seen[0], seen[1])
    assert seen[0].std() > 0  # drawn, not ones
