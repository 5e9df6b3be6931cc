"""Which CPU fast paths (:mod:`maelab.models.cpu.layers`) a model gets: each only where it is measured faster than
PyTorch's op at the model's shapes on this CPU (:mod:`maelab.models.cpu.choice`), chosen once per model."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Optional

import torch

from maelab.models.cpu import build
from maelab.models.cpu.cache import cached_choice, store_choice
from maelab.models.cpu.choice import Choice, Workload, choose
from maelab.models.cpu.layers import HEAD_DIMS
from maelab.models.cpu.ops import HAS_CPU_FLASH


def candidates(workload: Workload, built: bool) -> tuple[str, ...]:
    """The attentions worth timing for ``workload``: maelab's where it is built and covers every stack's head dim,
    the flash path where the model trains (it has no key mask and no no-grad form), the two matmuls and PyTorch's
    always."""
    names = ["math", "torch"]
    if built and all(s.dim // s.heads in HEAD_DIMS for s in workload.stacks):
        names.insert(0, "maelab")
    if HAS_CPU_FLASH and workload.training:
        names.insert(-1, "flash")
    return tuple(names)


def measured(workload: Workload, built: bool) -> Choice:
    """The cached choice for ``workload``, else a new measurement (one line on stderr), cached."""
    choice = cached_choice(workload)
    if choice is None:
        start = time.perf_counter()
        choice = choose(workload, candidates(workload, built))
        store_choice(workload, choice)
        print(f"maelab: CPU kernels timed at this model's shapes in {time.perf_counter() - start:.1f} s "
              f"(once per CPU, thread count and shapes): {choice.summary()}", file=sys.stderr, flush=True)
    return choice


def kernels_for(device: torch.device | str, precision: str = "fp32", workload: Optional[Workload] = None,
                recorded: Optional[dict] = None) -> Optional[Choice]:
    """The CPU fast paths a model on ``device`` at ``precision`` gets (for :func:`~maelab.models.cpu.use_kernels`):
    None (PyTorch's ops) off the CPU, at another precision than fp32, or with ``MAELAB_CPU_KERNELS=0``; on the
    CPU otherwise those measured faster at ``workload``'s shapes (cached), or those ``recorded`` in a run's
    checkpoint (a resume computes as the run did), or every one with ``MAELAB_CPU_KERNELS=1``. Without a workload
    nothing can be measured: None. Building maelab's attention kernel may warn once (then the flash path)."""
    mode = build.mode()
    if torch.device(device).type != "cpu" or precision != "fp32" or mode == "off":
        return None
    if recorded is not None:
        choice = Choice.from_dict(recorded, "as recorded in the run's checkpoint")
        if choice.attention == "maelab" and not build.available():
            choice = replace(choice, attention="flash")
        return choice
    if mode == "on":
        return Choice("maelab" if build.available() else "flash", True, f"forced by {build.ENV}=1")
    if workload is None:
        return None
    return measured(workload, build.available())


__all__ = ["candidates", "kernels_for"]
