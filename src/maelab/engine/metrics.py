"""Metrics: one JSON line per logging step and per epoch, mirrored to the sinks (TensorBoard, W&B:
:mod:`maelab.engine.log_sinks`)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from maelab.engine.log_sinks import LoggedImage, Sink
from maelab.errors import output_error, resume_hint
from maelab.run_layout import RunLayout
from maelab.undefined import dumps, finite_or_null


class MetricsLogger:
    """Appends records to ``metrics.jsonl`` and writes their numbers and images to the ``sinks``.

    ``kind`` is ``"step"`` or ``"epoch"``; the sinks' tags are ``<kind>/<key>`` at the global step.
    """

    def __init__(self, run_dir: Path, sinks: Sequence[Sink] = ()) -> None:
        self.path = RunLayout(run_dir).metrics
        self._file = self.path.open("a")
        self.sinks = list(sinks)

    def log(self, kind: str, record: dict[str, Any]) -> None:
        """Write one record (plain numbers and strings) tagged with ``kind``.

        Standard JSON: a NaN or infinite number (a skipped step's loss) is written as null with the value under
        ``"undefined"`` (``maelab.undefined.finite_or_null``).
        """
        images = {k: v for k, v in record.items() if isinstance(v, LoggedImage)}
        record = {k: v for k, v in record.items() if k not in images}
        line = finite_or_null({"kind": kind, **record}, "non-finite")
        try:
            self._file.write(dumps(line, indent=None) + "\n")
            self._file.flush()
        except OSError as err:  # a full disk: one clear line, the checkpoint and the lines before are intact
            raise output_error(err, self.path, "metrics", resume_hint(self.path.parent)) from None
        step = int(record.get("step", 0))
        values = {f"{kind}/{k}": v for k, v in record.items()
                  if k not in ("step", "epoch") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        for sink in self.sinks:
            sink.scalars(values, step)
            for key, image in images.items():
                sink.image(f"{kind}/{key}", image.pixels, step)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:  # only a line that log() already failed to write (and reported) can be pending
            pass
        for sink in self.sinks:
            sink.close()


class NullLogger:
    """A logger that writes nothing (the ranks other than 0 under torchrun)."""

    def log(self, kind: str, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All records of a run's metrics.jsonl (a last line cut short by a crash is left out)."""
    path = RunLayout(run_dir).metrics
    return [record for line in path.read_text().splitlines() if (record := _parsed(line)) is not None]


def drop_metrics_after(run_dir: Path, step: int) -> None:
    """Remove the records logged after ``step`` (on resume: an interrupted epoch is trained and logged again),
    and any line cut short by a crash. The file is replaced atomically: a failure leaves it as it was."""
    path = RunLayout(run_dir).metrics
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if (r := _parsed(ln)) is not None and r.get("step", 0) <= step]
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text("".join(ln + "\n" for ln in lines))
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise output_error(err, path, "metrics", "resume again") from None


def _parsed(line: str) -> Optional[dict[str, Any]]:
    """A metrics line as a dict; None for a blank line or one cut short by a crash or a full disk."""
    try:
        return json.loads(line) if line.strip() else None
    except json.JSONDecodeError:
        return None
