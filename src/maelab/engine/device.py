"""Device and precision choices."""

from __future__ import annotations

import os

import torch

from maelab.errors import ConfigError
from maelab.precision import DTYPES, autocast  # noqa: F401 - below the engine (gan/ computes in it too); from here too


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available: use train.device=cpu or auto")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto': bf16 on a CUDA card that supports it (compute capability 8.0 and later), fp16 with a loss scaler on
    an older one, fp32 on the CPU (bf16 on the CPU is ~20x slower here). An explicit bf16 on a card without it is a
    ConfigError naming fp16."""
    if device.type != "cuda":
        return "fp32" if name == "auto" else name
    bf16 = _card_has_bf16()
    if name == "bf16" and not bf16:
        raise ConfigError(f"train.precision=bf16 but {torch.cuda.get_device_name(device)} has no bf16: use "
                          "train.precision=fp16 (with a loss scaler) or auto")
    if name == "auto":
        return "bf16" if bf16 else "fp16"
    return name


def _card_has_bf16() -> bool:
    """Whether the current CUDA card computes in bf16 itself (not emulated); a torch without
    ``is_bf16_supported``'s ``including_emulation`` argument answers without it."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:
        return torch.cuda.is_bf16_supported()


def configure_backends(device: torch.device, tf32: bool, deterministic: bool) -> None:
    """Process-wide numerics for a run on ``device`` (``train.tf32``, ``train.deterministic``): TF32 for fp32
    matmuls and convolutions on CUDA (``torch.backends.cuda.matmul.allow_tf32``, cuDNN's), and deterministic
    algorithms (``torch.use_deterministic_algorithms``; cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` set before its first
    call, so it is set here when not set already; cuDNN's autotuner off). An op with no deterministic kernel then
    raises a RuntimeError naming it (PyTorch's behaviour)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # only on a change: the call imports
        torch.use_deterministic_algorithms(deterministic)  # torch._inductor.config (3 s of a CLI command's start)
