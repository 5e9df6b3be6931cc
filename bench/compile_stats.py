"""What torch.compile did while some code ran, read from dynamo's process-wide records as the difference of two
snapshots (nothing is reset, so contenders that alternate in one process each get their own share).

Where each figure comes from (torch 2.13's source; the GPU machine has 2.11):
- ``graphs``: ``counters["stats"]["unique_graphs"]``, FX graphs dynamo handed to a backend (_dynamo/output_graph.py);
  ``ops_captured``: ``counters["stats"]["calls_captured"]``, the calls those graphs hold;
- ``graph_breaks``: the sum of ``counters["graph_break"]``, one entry per break reason;
- ``frames_compiled``: ``counters["frames"]["ok"]``, frames dynamo converted (_dynamo/convert_frame.py);
- ``recompiles``: compiles of a frame beyond its first, from ``convert_frame.FRAME_COMPILE_COUNTER`` (compiles per
  frame id); ``recompile_reasons``: the guards that failed, from ``utils.guard_failures`` (code object -> reasons);
- ``cudagraph_skips``: ``counters["inductor"]["cudagraph_skips"]``, graphs inductor ran without a CUDA graph
  (_inductor/cudagraph_utils.py, output_code.py, cudagraph_trees.py: mutated inputs, CPU ops, re-record limit);
- ``cuda_graphs_recorded``: the graphs in the CUDA-graph tree manager of the device (_inductor/cudagraph_trees.py);
- ``compile_s``: ``utils.calculate_time_spent()``, seconds per compile phase (entire_frame_compile, backend_compile);
  ``compile_functions_s``: ``utils.compile_times("csv", aggregate=True)``, seconds per timed compiler function
  (nested: bytecode_tracing, OutputGraph.call_user_compiler, ...), those of 0.1 s or more.

Names can differ between torch versions: a counter torch has not recorded in this process, or machinery this torch
lacks, reads as None (null in the JSON), never an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

import torch

Snapshot = dict[str, Any]
COUNTERS = {"graphs": ("stats", "unique_graphs"), "ops_captured": ("stats", "calls_captured"),
            "frames_compiled": ("frames", "ok"), "cudagraph_skips": ("inductor", "cudagraph_skips")}
MAX_REASONS = 3  # recompile reasons kept per contender, each cut to its first line


def snapshot(device: torch.device) -> Snapshot:
    """Everything :func:`difference` compares, as it is now."""
    return {"counters": _counters(), "frame_compiles": _frame_compiles(), "guard_failures": _guard_failures(),
            "phases": _phases(), "functions": _functions(), "cuda_graphs": recorded_cuda_graphs(device)}


def difference(after: Snapshot, before: Snapshot) -> dict[str, Any]:
    """What happened between two snapshots, as the row's ``compile`` figures (None: not recorded by this torch)."""
    out: dict[str, Any] = {name: _count_delta(after, before, *key) for name, key in COUNTERS.items()}
    out["graph_breaks"] = _group_delta(after, before, "graph_break")
    out["recompiles"] = _recompiles(after["frame_compiles"], before["frame_compiles"])
    out["recompile_reasons"] = _new_reasons(after["guard_failures"], before["guard_failures"])
    out["cuda_graphs_recorded"] = _minus(after["cuda_graphs"], before["cuda_graphs"])
    out["compile_s"] = _phase_delta(after["phases"], before["phases"])
    functions = _phase_delta(after.get("functions"), before.get("functions"))
    out["compile_functions_s"] = None if functions is None else {k: s for k, s in functions.items() if s >= 0.1}
    return out


def accumulate(total: Optional[dict[str, Any]], part: dict[str, Any]) -> dict[str, Any]:
    """Two stretches' figures added up (None stays None unless the other side has a number)."""
    if total is None:
        return dict(part)
    out = {}
    for key, value in part.items():
        old = total.get(key)
        if isinstance(value, list):
            out[key] = [*(old or []), *value][:MAX_REASONS]
        elif isinstance(value, dict):
            out[key] = {k: round((old or {}).get(k, 0.0) + value.get(k, 0.0), 3) for k in {*(old or {}), *value}}
        else:
            out[key] = value if old is None else old if value is None else old + value
    return out


def cuda_graph_failure(stats: Optional[dict[str, Any]], device_type: str) -> Optional[str]:
    """Why a row meant to replay CUDA graphs cannot be trusted to have done so; None when they ran: no skip, and
    at least one graph recorded."""
    if device_type != "cuda":
        return f"CUDA graphs need a CUDA device: this row ran the whole step on {device_type} without them"
    stats = stats or {}
    skips = stats.get("cudagraph_skips")
    if skips:
        return f"inductor skipped CUDA graphs {skips} time(s) (the log's 'skipping cudagraphs' lines say why)"
    recorded = stats.get("cuda_graphs_recorded")
    if recorded is None:
        return "the CUDA-graph trees could not be read: no evidence that CUDA graphs ran"
    if recorded == 0:
        return "no CUDA graph was recorded"
    return None


def recorded_cuda_graphs(device: torch.device) -> Optional[int]:
    """The CUDA graphs the tree manager of ``device`` holds (0 before any; None off CUDA or where unreadable)."""
    if device.type != "cuda":
        return None
    try:
        from torch._inductor import cudagraph_trees

        manager = cudagraph_trees.get_manager(device.index or 0, create_if_none_exists=False)
        if manager is None:
            return 0
        return sum(1 for _ in _nodes(manager.roots))
    except Exception:  # noqa: BLE001 - a private API: whatever changed, the figure is unknown
        return None


def _nodes(children: dict[Any, list[Any]]) -> Iterator[Any]:
    for nodes in children.values():
        for node in nodes:
            yield node
            yield from _nodes(node.children)


def _counters() -> Optional[dict[str, dict[str, int]]]:
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    return {group: dict(values) for group, values in counters.items()}


def _frame_compiles() -> Optional[dict[Any, int]]:
    try:
        from torch._dynamo import convert_frame
    except ImportError:
        return None
    compiles = getattr(convert_frame, "FRAME_COMPILE_COUNTER", None)
    return None if compiles is None else dict(compiles)


def _guard_failures() -> Optional[dict[str, list[str]]]:
    """The guard failures so far (each one a recompile), per code object as ``name (file:line)``."""
    try:
        from torch._dynamo.utils import guard_failures
    except ImportError:
        return None
    return {_code_name(code): list(reasons) for code, reasons in guard_failures.items()}


def _phases() -> Optional[dict[str, float]]:
    try:
        from torch._dynamo.utils import calculate_time_spent

        return dict(calculate_time_spent())
    except Exception:  # noqa: BLE001 - older or newer torch: unknown
        return None


def _functions() -> Optional[dict[str, float]]:
    try:
        from torch._dynamo.utils import compile_times

        names, seconds = compile_times(repr="csv", aggregate=True)
        return {name: float(s) for name, s in zip(names, seconds, strict=True)}
    except Exception:  # noqa: BLE001 - older or newer torch: unknown
        return None


def _code_name(code: Any) -> str:
    name, path, line = (getattr(code, attr, "?") for attr in ("co_name", "co_filename", "co_firstlineno"))
    return f"{name} ({str(path).rsplit('/', 1)[-1]}:{line})"


def _count_delta(after: Snapshot, before: Snapshot, group: str, key: str) -> Optional[int]:
    now = (after["counters"] or {}).get(group, {}).get(key)
    if now is None:
        return None
    return now - (before["counters"] or {}).get(group, {}).get(key, 0)


def _group_delta(after: Snapshot, before: Snapshot, group: str) -> Optional[int]:
    now = (after["counters"] or {}).get(group)
    if now is None:
        return None
    return sum(now.values()) - sum((before["counters"] or {}).get(group, {}).values())


def _recompiles(after: Optional[dict[Any, int]], before: Optional[dict[Any, int]]) -> Optional[int]:
    """Compiles beyond each frame's first that happened between the two snapshots."""
    if after is None:
        return None
    before = before or {}
    return sum(max(0, n - 1) - max(0, before.get(frame, 0) - 1) for frame, n in after.items())


def _new_reasons(after: Optional[dict[str, list[str]]], before: Optional[dict[str, list[str]]]) -> list[str]:
    if after is None:
        return []
    before = before or {}
    reasons = [f"{code}: {' '.join(str(reason).strip().splitlines()[0].split())[:160]}"
               for code, seen in after.items() for reason in seen[len(before.get(code, [])):]]
    return reasons[:MAX_REASONS]


def _minus(after: Optional[int], before: Optional[int]) -> Optional[int]:
    return None if after is None else after - (before or 0)


def _phase_delta(after: Optional[dict[str, float]], before: Optional[dict[str, float]]) -> Optional[dict[str, float]]:
    if after is None:
        return None
    before = before or {}
    spent = {phase: round(s - before.get(phase, 0.0), 3) for phase, s in after.items()}
    return {phase: s for phase, s in spent.items() if s > 0}
