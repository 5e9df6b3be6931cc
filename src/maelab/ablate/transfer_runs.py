"""Two copies of one run of a suite, this folder's and an archive's (:mod:`maelab.ablate.transfer`): how each
stands, and which one a merge keeps.

A copy is done, failed or unfinished (its ablate.json). Two done copies are the same when their results are:
every eval/*.json and the epoch records of metrics.jsonl, without the timings and paths that differ between
machines (:data:`VOLATILE`); done with other results is a conflict that only a person can settle. A done copy
wins over one that is not. Of two copies that are not done, the one further along wins: pretrained first, then
the position of its checkpoints/last.pt (in epochs), then the number of evaluations written; a tie keeps this
folder's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from maelab.ablate.results import read_status
from maelab.engine.metrics import read_metrics
from maelab.errors import UserError
from maelab.run_layout import RunLayout

DONE, FAILED, UNFINISHED = "done", "failed", "unfinished"
TAKEN, KEPT, EQUAL = "taken", "kept", "equal"  # the archive's copy replaces this folder's, or not, or no matter
VOLATILE = ("checkpoint", "feature_cache", "img_per_s", "seconds")  # (and *_seconds): timings and paths


def run_state(run_dir: Path) -> str:
    """DONE, FAILED or UNFINISHED (a run started and stopped, or one whose folder has no ablate.json)."""
    status = read_status(run_dir).get("status")
    return status if status in (DONE, FAILED) else UNFINISHED


def results_of(run_dir: Path) -> dict[str, Any]:
    """{"eval": {file name: its content}, "epochs": [epoch records]} without :data:`VOLATILE` keys."""
    layout = RunLayout(run_dir)
    evals = {p.name: _stable(_read_json(p)) for p in sorted(layout.eval_dir.glob("*.json"))}
    records = read_metrics(run_dir) if layout.metrics.is_file() else []
    return {"eval": evals, "epochs": [_stable(r) for r in records if r.get("kind") == "epoch"]}


def progress_of(run_dir: Path) -> tuple[bool, float, int]:
    """(pretrained, epochs of checkpoints/last.pt (0 without one, -1 when it cannot be read), evaluations
    written): tuples compare as "further along"."""
    layout = RunLayout(run_dir)
    epochs = _checkpoint_epochs(layout.checkpoint) if layout.checkpoint.is_file() else 0.0
    evals = len(list(layout.eval_dir.glob("*.json"))) if layout.eval_dir.is_dir() else 0
    return bool(read_status(run_dir).get("pretrained")), epochs, evals


def choose(theirs: Path, mine: Path, name: str) -> str:
    """Whether the archive's copy ``theirs`` of run ``name`` (runs/<variant>/seed<k>) replaces this folder's
    ``mine`` (TAKEN), or not (KEPT), or both are the same (EQUAL).

    Raises UserError when both are done with different results."""
    if not mine.is_dir():
        return TAKEN
    a, b = run_state(theirs), run_state(mine)
    if a == DONE and b == DONE:
        differ = difference(results_of(theirs), results_of(mine))
        if differ:
            raise UserError(f"{name} is finished in both with different results ({differ}): delete {mine} to take "
                            "the archive's, or do not merge this archive to keep yours")
        return EQUAL
    if DONE in (a, b):
        return TAKEN if a == DONE else KEPT
    there, here = progress_of(theirs), progress_of(mine)
    if there == here and read_status(theirs) == read_status(mine) and results_of(theirs) == results_of(mine):
        return EQUAL
    return TAKEN if there > here else KEPT


def difference(theirs: dict[str, Any], mine: dict[str, Any]) -> str:
    """The first difference between two :func:`results_of` ("" when none), for a person to read."""
    for file in sorted(set(theirs["eval"]) | set(mine["eval"])):
        a, b = theirs["eval"].get(file), mine["eval"].get(file)
        if a == b:
            continue
        if a is None or b is None:
            return f"eval/{file} only {'here' if a is None else 'in the archive'}"
        if isinstance(a, dict) and isinstance(b, dict):
            key = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))[0]
            return f"eval/{file} {key}: {_short(b.get(key))} here, {_short(a.get(key))} in the archive"
        return f"eval/{file} differs"
    if theirs["epochs"] != mine["epochs"]:
        return (f"metrics.jsonl's epoch records differ ({len(mine['epochs'])} here, {len(theirs['epochs'])} in the "
                "archive)" if len(theirs["epochs"]) != len(mine["epochs"]) else "metrics.jsonl's epoch records differ")
    return ""


def _checkpoint_epochs(path: Path) -> float:
    """The position of a checkpoint in epochs (its step / steps per epoch); -1 when it cannot be read."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # the tensors are not read
        return float(state.get("step", 0)) / max(1, int(state.get("steps_per_epoch") or 1))
    except Exception:  # noqa: BLE001 - a corrupt or foreign file is simply not "further along"
        return -1.0


def _read_json(path: Path) -> Any:
    text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # compared as it is


def _stable(value: Any) -> Any:
    """``value`` without :data:`VOLATILE` keys, at any depth."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE and not k.endswith("_seconds")}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."
