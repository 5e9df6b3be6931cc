"""Which files of an export folder maelab's exports wrote: a later export replaces those, and no other file.

An export may go into a folder that holds the user's own files (``maelab export RUN --out ~/models/mine``). As HF's
``save_pretrained`` does, the export writes its files beside the others there and leaves them alone; a file of the
same name as one of the export's is replaced only when an earlier maelab export wrote it (a re-export refreshes the
export), else the export is refused before anything is written, as a run folder refuses to hold another run. The
folder's :data:`RECORD` lists the names maelab's exports wrote into it; a folder exported into before the record
existed is known by the metadata file those exports wrote (:data:`EARLIER`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from maelab.atomic import atomic_file
from maelab.errors import UserError

RECORD = ".maelab-export.json"
# the metadata file of an export written before RECORD, how to know it is maelab's, and the files written with it
EARLIER: dict[str, tuple[Any, set[str]]] = {
    "maelab.json": (lambda info: info.get("exported_by") == "maelab",  # hf, hf-vit, timm
                    {"config.json", "model.safetensors", "preprocessor_config.json", "maelab.json"}),
    "encoder.json": (lambda info: {"spec", "checkpoint", "step"} <= set(info),  # safetensors
                     {"encoder.safetensors", "encoder.json"}),
}


def _read_json(path: Path) -> dict:
    """The JSON object in ``path``; {} for a missing or unreadable file or another JSON value."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_names(out: Path) -> set[str]:
    """The names :data:`RECORD` in ``out`` lists as written by maelab's exports (empty without one)."""
    names = _read_json(Path(out) / RECORD).get("files", [])
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def exported_names(out: Path) -> set[str]:
    """The names in ``out`` that maelab's exports wrote: those its record lists, and those of an export written
    before the record (known by its own metadata file)."""
    names = recorded_names(out)
    for meta, (is_maelab, written) in EARLIER.items():
        if (Path(out) / meta).is_file() and is_maelab(_read_json(Path(out) / meta)):
            names |= written
    return names


def check_replaceable(out: Path, names: Sequence[str]) -> list[str]:
    """The names among ``names`` that ``out`` already holds (all written by an earlier maelab export: the export
    replaces them); a UserError naming the folder, the files and the fix when one of them is not maelab's."""
    present = [name for name in names if (Path(out) / name).exists()]
    ours = exported_names(out) if present else set()
    theirs = [name for name in present if name not in ours]
    if theirs:
        them = "those files" if len(theirs) > 1 else "that file"
        raise UserError(f"the export folder {out} holds {', '.join(theirs)}, which this export would overwrite and "
                        f"which no maelab export wrote: export into an empty or new folder (--out DIR), or move "
                        f"{them} out of it; nothing was written")
    return present


def recorded_groups(out: Path) -> list[set[str]]:
    """The sets of names each earlier export wrote together into ``out`` (its record's ``exports``; for a record or
    folder from before groups were kept, the files each export's metadata file comes with: :data:`EARLIER`)."""
    groups = _read_json(Path(out) / RECORD).get("exports")
    if isinstance(groups, list) and all(isinstance(g, list) for g in groups):
        return [{n for n in g if isinstance(n, str)} for g in groups]
    return [set(written) for meta, (is_maelab, written) in EARLIER.items()
            if (Path(out) / meta).is_file() and is_maelab(_read_json(Path(out) / meta))]


def remove_stale(out: Path, names: Sequence[str]) -> list[str]:
    """Delete what remains of each earlier export into ``out`` that this export (``names``) overwrote in part: an
    ``hf`` folder exported again as ``timm`` would otherwise keep hf's config.json beside timm's weights, which
    ``from_pretrained`` loads as random weights. An earlier export this one shares no file with stays (a
    safetensors export beside a timm one). Records the groups left; returns the names removed (the user's own files
    are never among them)."""
    new, kept, stale = set(names), [], set()
    for group in recorded_groups(out):
        if group & new:
            stale |= group - new
        else:
            kept.append(group)
    stale = {n for n in stale if n != RECORD and (Path(out) / n).is_file()}
    for name in sorted(stale):
        (Path(out) / name).unlink()
    groups = [*kept, new]
    with atomic_file(Path(out) / RECORD) as f:
        f.write(json.dumps({"written_by": "maelab export", "files": sorted(set().union(*groups)),
                            "exports": [sorted(g) for g in groups]}, indent=2) + "\n")
    return sorted(stale)


def record_export(out: Path, names: Sequence[str]) -> None:
    """Add ``names`` to the record of ``out`` (written atomically; an OSError propagates)."""
    files = sorted(recorded_names(out) | set(names))
    record = _read_json(Path(out) / RECORD)
    with atomic_file(Path(out) / RECORD) as f:
        f.write(json.dumps({**record, "written_by": "maelab export", "files": files}, indent=2) + "\n")
