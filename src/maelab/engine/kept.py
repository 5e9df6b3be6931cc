"""Kept checkpoints: which epochs a run keeps besides last.pt (``train.keep_checkpoints``), pruning the older
ones, and what ``--checkpoint epoch:N`` means.

Epoch N is the state after N epochs of training (the checkpoint's ``epoch``; metrics.jsonl's record of epoch
N - 1). A run with ``train.keep_checkpoints`` != 0 writes ``checkpoints/epoch_NNNN.pt`` after each epoch N that
is a multiple of ``train.save_every``, and after its last epoch (``optim.epochs``); never after a stop between
two epochs or at ``train.stop_after_epochs``, so the epochs a run keeps do not depend on how often it was
interrupted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from maelab.errors import UserError
from maelab.run_layout import RunLayout

EPOCH_SPEC = re.compile(r"epoch:(\d+)")


def keeps_epoch(epochs_done: int, epochs: int, save_every: int, keep: int) -> bool:
    """Whether a run of ``epochs`` epochs writes a kept checkpoint after ``epochs_done`` epochs."""
    return keep != 0 and (epochs_done % save_every == 0 or epochs_done == epochs)


def kept_at_end(epochs: int, save_every: int, keep: int) -> list[int]:
    """The epochs whose checkpoints a run of ``epochs`` epochs holds when it ends (ascending)."""
    written = [e for e in range(1, epochs + 1) if keeps_epoch(e, epochs, save_every, keep)]
    return written if keep < 0 else written[max(len(written) - keep, 0):]


def prune_kept(run_dir: Path, keep: int, written: int) -> list[Path]:
    """Delete the kept checkpoints beyond the ``keep`` most recent epochs (none when ``keep`` < 0), never the one
    just ``written``; returns the deleted paths. Call it only after ``written`` is safely on disk."""
    if keep < 0:
        return []
    epochs = list(RunLayout(run_dir).kept_checkpoints().items())
    doomed = [path for epoch, path in epochs[:max(len(epochs) - keep, 0)] if epoch != written]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def resolve_checkpoint(run_dir: Path, checkpoint: Optional[str | Path]) -> Path:
    """The file a ``--checkpoint`` value names: ``None`` -> checkpoints/last.pt, ``epoch:N`` -> the checkpoint
    kept after N epochs, anything else -> that path. A kept epoch that is not there is a UserError listing the
    epochs the run holds."""
    layout = RunLayout(run_dir)
    if checkpoint is None or checkpoint == "":
        return layout.checkpoint
    text = str(checkpoint)
    if not text.startswith("epoch:"):
        return Path(checkpoint)
    match = EPOCH_SPEC.fullmatch(text)
    if match is None:
        raise UserError(f"--checkpoint {text} is not valid: give epoch:N with N a number of epochs (epoch:10), "
                        "or a checkpoint file")
    epoch = int(match.group(1))
    kept = layout.kept_checkpoints()
    if epoch not in kept:
        raise UserError(f"{run_dir} holds no checkpoint of epoch {epoch} ({_holds(kept)}): give one of those, or "
                        "pretrain with train.keep_checkpoints=K (K most recent, -1 every one) and train.save_every=N "
                        "to keep the checkpoint of every N-th epoch")
    return kept[epoch]


def _holds(kept: dict[int, Path]) -> str:
    if not kept:
        return "it keeps no epoch checkpoints, only checkpoints/last.pt"
    return "kept epochs: " + ", ".join(map(str, kept))
