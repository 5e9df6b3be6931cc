"""What a run compiles, decided once when it is built: eager, the model's forward, or the whole step (as CUDA graphs on
CUDA), from ``train.compile``, ``train.compile_scope`` and ``train.compile_mode`` (null: chosen here), the device,
the precision, the world size and what the installed torch can trace.

The default (all three null) is the whole step replayed as CUDA graphs on CUDA wherever the config allows it, the
model's forward compiled where it does not, and eager on the CPU; a run that falls back says so in one line at start
(:attr:`CompilePlan.note`). Settings given explicitly are kept, or refused with one line naming the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from maelab.config import Config, whole_step_conflicts
from maelab.errors import ConfigError

CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")  # inductor's modes that replay CUDA graphs


@dataclass(frozen=True)
class CompilePlan:
    """scope: None (eager) | "model" | "step"; backend and mode: torch.compile's; note: the one line a run prints
    at start about its choice (None when there is nothing to say: the default on the CPU, or every setting given)."""

    scope: Optional[str] = None
    backend: str = "inductor"
    mode: str = "default"
    cuda_graphs: bool = False
    note: Optional[str] = None

    def options(self) -> dict[str, str]:
        """torch.compile's keyword arguments (the mode only when it is not inductor's default)."""
        return {"backend": self.backend, **({} if self.mode == "default" else {"mode": self.mode})}


def whole_step_unsupported() -> Optional[str]:
    """Why the installed torch cannot compile the whole step, or None when it can. The step traces
    ``loss.backward()`` into its graph (dynamo's ``trace_autograd_ops``, torch >= 2.11) and a mask schedule's
    visible count K as a symbolic size (``mark_unbacked``, or ``backed_size_oblivious`` under CUDA graphs)."""
    import torch._dynamo  # 1.4 s: only where a compile is asked for
    import torch.fx.experimental._config as fx_config

    missing = [name for module, name in ((torch._dynamo.config, "trace_autograd_ops"),
                                         (torch._dynamo.decorators, "mark_unbacked"),
                                         (fx_config, "backed_size_oblivious")) if not hasattr(module, name)]
    if not missing:
        return None
    return f"torch {torch.__version__} has no {' or '.join(missing)} (the whole step needs torch >= 2.11)"


def plan_compile(cfg: Config, device: torch.device, precision: str, world_size: int = 1) -> CompilePlan:
    """The run's compile plan. Raises ConfigError where an explicit ``train.compile_scope=step`` cannot run here
    (under torchrun, or on a torch that cannot trace it)."""
    train = cfg.train
    wanted = train.compile if train.compile is not None else device.type == "cuda"
    if not wanted:
        return CompilePlan(note="compile: none (train.compile=false)" if device.type == "cuda" else None)
    scope, why_not = train.compile_scope, _whole_step_obstacles(cfg, device, precision, world_size)
    if scope == "step" and why_not:
        fix = "install torch >= 2.11, or " if world_size == 1 else ""
        raise ConfigError(f"train.compile_scope=step cannot run here: {why_not[0]}; {fix}use train.compile_scope=model")
    scope = scope or ("model" if why_not else "step")
    mode = train.compile_mode
    if mode is None:
        auto_graphs = scope == "step" and device.type == "cuda" and train.compile_backend == "inductor"
        mode = "reduce-overhead" if auto_graphs else "default"
    cuda_graphs = device.type == "cuda" and train.compile_backend == "inductor" and mode in CUDA_GRAPH_MODES
    note = _note(scope, cuda_graphs, why_not) if train.compile_scope is None and device.type == "cuda" else None
    return CompilePlan(scope=scope, backend=train.compile_backend, mode=mode, cuda_graphs=cuda_graphs, note=note)


def _note(scope: str, cuda_graphs: bool, why_not: list[str]) -> str:
    """The start line of a plan the run chose itself on CUDA."""
    if scope == "step":
        what = "the whole step" + (" as CUDA graphs" if cuda_graphs else "")
    else:
        what = f"the model's forward, not the whole step: {'; '.join(why_not)}"
    return f"compile: {what} (train.compile=false turns compiling off)"


def _whole_step_obstacles(cfg: Config, device: torch.device, precision: str, world_size: int) -> list[str]:
    """Why this run cannot compile its whole step, one phrase each (empty: it can)."""
    reasons = []
    if device.type != "cuda" and cfg.train.compile_scope is None:
        reasons.append("on the CPU the whole step is not faster than eager (docs/performance.md)")
    if world_size > 1:
        reasons.append(f"it runs in one process, this is {world_size} under torchrun")
    conflicts = whole_step_conflicts(cfg)
    if precision == "fp16" and cfg.train.precision != "fp16":
        conflicts.append("fp16 (this card has no bf16)")
    if conflicts:
        reasons.append(f"it cannot hold {', '.join(conflicts)}")
    unsupported = whole_step_unsupported()
    if unsupported:
        reasons.append(unsupported)
    return reasons
