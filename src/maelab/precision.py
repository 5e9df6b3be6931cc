"""The precision a step computes in: the autocast context of a run's ``train.precision`` (fp32: none).

Below the engine and its add-ons (``gan/``), which both compute in it; :mod:`maelab.engine.device` resolves the
precision of a run and re-exports :func:`autocast`.
"""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for a step on ``device`` in ``precision`` ("bf16", "fp16"; a no-op for "fp32")."""
    dtype = DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
