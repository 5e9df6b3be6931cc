"""The table of an encoder against its floors, as `maelab demo` and `maelab eval` print it: one row per encoder
(pretrained, random init, predicting zeros, ...), one column per metric, "–" for an undefined or absent value,
then one note per undefined value with its reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from maelab.undefined import DASH, fmt, reason_of

RECON_COLUMNS = {"PSNR masked dB": "psnr_masked", "SSIM full": "ssim_full"}  # table column -> recon.json key


def recon_cells(recon: dict[str, Any], tag: str, label: str, notes: list[str]) -> dict[str, Optional[float]]:
    """The table's reconstruction cells of one row; a note (appended) for each one that is undefined."""
    cells = {}
    for column, key in RECON_COLUMNS.items():
        cells[column] = recon[key + tag]
        if cells[column] is None:
            notes.append(f"{label}, {column}: {DASH} ({reason_of(recon, key + tag)})")
    return cells


def format_table(rows: dict[str, dict[str, Optional[float]]], notes: Sequence[str] = ()) -> str:
    """A plain-text table: one row per encoder, one column per metric; "–" for an undefined or absent value,
    then the notes."""
    columns = list(rows["pretrained"])
    lines = [f"{'':<16}" + "".join(f"{c:>16}" for c in columns)]
    for label, values in rows.items():
        lines.append(f"{label:<16}" + "".join(f"{fmt(values.get(c)):>16}" for c in columns))
    return "\n".join([*lines, *notes])
