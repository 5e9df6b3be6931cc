"""What a run compiles, decided once when it is built: eager, the model's forward, or the whole step (as CUDA graphs on
CUDA), from ``train.compile``, ``train.compile_scope`` and ``train.compile_mode`` (null: chosen here), the device,
the precision, the world size and what the installed torch can trace.

The default (all three null) is the whole step replayed as CUDA graphs on CUDA wherever the config allows it, the
model's forward compiled where it does not, and eager on the CPU; a run that falls back says so in one line at start
(:attr:`CompilePlan.note`). Settings given explicitly are kept, or refused with one line naming the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def plan_compile(cfg: Config, device: torch.device, precision: str, world_size: int = 1,
                 addons: Sequence[str] = ()) -> CompilePlan:
    """The run's compile plan. Raises ConfigError where an explicit setting cannot take effect: a
    ``train.compile_scope`` or ``compile_mode`` on a run that compiles nothing (the CPU's default), or
    ``train.compile_scope=step`` where the step cannot compile (under torchrun, fp16, a torch before 2.11, with an
    add-on: ``addons`` names those the run built beyond what the config's own conflicts name)."""
    train = cfg.train
    wanted = train.compile if train.compile is not None else device.type == "cuda"
    if not wanted:
        _refuse_unused(train.compile_scope, train.compile_mode)
        return CompilePlan(note="compile: none (train.compile=false)" if device.type == "cuda" else None)
    scope, obstacles = train.compile_scope, _whole_step_obstacles(cfg, device, precision, world_size, addons)
    if scope == "step" and obstacles:
        reason, fix = obstacles[0]
        raise ConfigError(f"train.compile_scope=step cannot run here: {reason}; {fix}")
    scope = scope or ("model" if obstacles else "step")
    graphs_backend = train.compile_backend == "cudagraphs"  # dynamo's backend that only replays CUDA graphs
    mode = train.compile_mode
    if mode is None:
        auto_graphs = scope == "step" and device.type == "cuda" and train.compile_backend == "inductor"
        mode = "reduce-overhead" if auto_graphs else "default"
    cuda_graphs = device.type == "cuda" and (graphs_backend or (train.compile_backend == "inductor"
                                                                and mode in CUDA_GRAPH_MODES))
    why_not = [reason for reason, _ in obstacles]
    note = _note(scope, cuda_graphs, why_not) if train.compile_scope is None and device.type == "cuda" else None
    return CompilePlan(scope=scope, backend=train.compile_backend, mode=mode, cuda_graphs=cuda_graphs, note=note)


def _refuse_unused(scope: Optional[str], mode: Optional[str]) -> None:
    """A compile setting on a run that compiles nothing (the CPU's default: eager) is an error, not a no-op."""
    for key, value in (("compile_scope", scope), ("compile_mode", mode)):
        if value is not None:
            raise ConfigError(f"train.{key}={value} has no effect: on the CPU nothing is compiled unless "
                              f"train.compile=true; add it, or drop train.{key}")


def _note(scope: str, cuda_graphs: bool, why_not: list[str]) -> str:
    """The start line of a plan the run chose itself on CUDA."""
    if scope == "step":
        what = "the whole step" + (" as CUDA graphs" if cuda_graphs else "")
    else:
        what = f"the model's forward, not the whole step: {'; '.join(why_not)}"
    return f"compile: {what} (train.compile=false turns compiling off)"


def _whole_step_obstacles(cfg: Config, device: torch.device, precision: str, world_size: int,
                          addons: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Why this run cannot compile its whole step: (reason, fix) pairs, one per obstacle (empty: it can)."""
    obstacles = []
    if device.type != "cuda" and cfg.train.compile_scope is None:
        obstacles.append(("on the CPU the whole step is not faster than eager (docs/performance.md)", ""))
    if world_size > 1:
        obstacles.append((f"it runs in one process, this is {world_size} under torchrun",
                          "use train.compile_scope=model"))
    if precision == "fp16" and cfg.train.precision != "fp16":  # the config refuses an explicit fp16 with the step
        obstacles.append(("it cannot hold fp16 (this card has no bf16; the loss scaler decides on the host)",
                          "use train.precision=fp32, or train.compile_scope=model"))
    conflicts = whole_step_conflicts(cfg)
    if conflicts:
        obstacles.append((f"it cannot hold {', '.join(conflicts)}", "use train.compile_scope=model"))
    if addons:  # the compiled step runs no add-on (maelab.addons): the eager step does
        obstacles.append((f"it cannot hold the add-on {', '.join(addons)}", "use train.compile_scope=model"))
    unsupported = whole_step_unsupported()
    if unsupported:
        obstacles.append((unsupported, "install torch >= 2.11, or use train.compile_scope=model"))
    return obstacles
