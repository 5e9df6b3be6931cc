"""Any CUDA card: bf16 only where the card has it (else fp16 with a scaler), TF32 for fp32 matmuls on CUDA, and
deterministic algorithms on request."""

import os

import pytest
import torch

from maelab.config import load_config
from maelab.engine.device import configure_backends, resolve_precision
from maelab.engine.run import build_run
from maelab.errors import UserError

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.fixture
def card(monkeypatch):
    """A CUDA card as torch.cuda reports it, with or without bf16 (no GPU needed: the two calls precision asks)."""
    def set_card(bf16: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100" if not bf16 else "H100")
    return set_card


@pytest.fixture
def restore_backends():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
    torch.use_deterministic_algorithms(saved[2])
    torch.backends.cudnn.benchmark = saved[3]
    if saved[4] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def test_auto_precision_is_bf16_on_a_card_that_has_it_and_fp16_on_one_that_does_not(card):
    card(bf16=True)
    assert resolve_precision("auto", CUDA) == "bf16"
    card(bf16=False)
    assert resolve_precision("auto", CUDA) == "fp16"
    assert resolve_precision("auto", CPU) == "fp32"


def test_bf16_asked_for_on_a_card_without_it_is_refused_naming_fp16(card):
    card(bf16=False)
    with pytest.raises(UserError, match=r"Tesla V100 has no bf16: use train.precision=fp16"):
        resolve_precision("bf16", CUDA)
    assert resolve_precision("fp16", CUDA) == "fp16"


def test_tf32_is_set_for_cuda_runs_only(restore_backends):
    torch.backends.cuda.matmul.allow_tf32 = False
    configure_backends(CPU, tf32=True, deterministic=False)
    assert not torch.backends.cuda.matmul.allow_tf32  # the CPU has no TF32: a CPU run changes nothing
    configure_backends(CUDA, tf32=True, deterministic=False)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert torch.get_float32_matmul_precision() == "high"
    configure_backends(CUDA, tf32=False, deterministic=False)
    assert not torch.backends.cuda.matmul.allow_tf32 and torch.get_float32_matmul_precision() == "highest"


def test_train_deterministic_turns_on_deterministic_algorithms_for_the_run(tmp_path, tiny, restore_backends):
    build_run(load_config(None, [*tiny, "train.deterministic=true"]), tmp_path / "a")
    assert torch.are_deterministic_algorithms_enabled()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # what cuBLAS needs to be deterministic
    with pytest.raises(RuntimeError, match="does not have a deterministic implementation"):
        torch.zeros(4).put_(torch.tensor([0]), torch.ones(1))  # an op with no deterministic kernel, on any device
    build_run(load_config(None, tiny), tmp_path / "b")  # the default: off again
    assert not torch.are_deterministic_algorithms_enabled()


def test_every_run_sets_tf32_on_by_default_and_off_when_asked(tmp_path, tiny, monkeypatch):
    import maelab.engine.run as run_module

    seen = []
    monkeypatch.setattr(run_module, "configure_backends", lambda *args: seen.append(args))
    build_run(load_config(None, tiny), tmp_path / "a")
    build_run(load_config(None, [*tiny, "train.tf32=false"]), tmp_path / "b")
    assert seen == [(CPU, True, False), (CPU, False, False)]  # (device, train.tf32, train.deterministic)


def test_a_card_without_bf16_says_at_the_start_that_auto_chose_fp16_with_a_scaler(tmp_path, tiny, card):
    from maelab.engine.run import start_notes

    run = build_run(load_config(None, tiny), tmp_path / "run")
    card(bf16=False)
    run.precision, run.device = "fp16", CUDA  # what build_run resolves on that card (the test above)
    assert "precision: fp16 with a loss scaler (Tesla V100 has no bf16)" in start_notes(run)
    run.cfg = load_config(None, [*tiny, "train.precision=fp16"])  # asked for: nothing to say
    assert not any(note.startswith("precision:") for note in start_notes(run))
