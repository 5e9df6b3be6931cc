"""Device and precision choices."""

from __future__ import annotations

import contextlib

import torch

from maelab.config import TrainConfig
from maelab.errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; asking for CUDA without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available: use train.device=cpu or auto")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' is bf16 on CUDA and fp32 on CPU (bf16 on CPU is ~20x slower here)."""
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a step (a no-op for fp32)."""
    dtype = DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def compile_options(train: TrainConfig) -> dict[str, str]:
    """torch.compile's keyword arguments from ``train.compile_backend`` and ``train.compile_mode`` (the mode only
    when it is not inductor's default): the model's compile and the whole step's take the same."""
    mode = {} if train.compile_mode == "default" else {"mode": train.compile_mode}
    return {"backend": train.compile_backend, **mode}
