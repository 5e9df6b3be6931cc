"""The measured choices of :mod:`maelab.models.cpu.choice`, kept beside the CPU kernel's build (torch's extension
cache, ``TORCH_EXTENSIONS_DIR`` or ~/.cache/torch_extensions) in ``maelab_cpu_choices.json``: one entry per CPU (the
kernel's build name carries this CPU's model and instruction-set flags and the kernel's source), torch version,
thread count and workload. A lost or unreadable file only costs a new measurement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from maelab.atomic import write_text_atomic
from maelab.models.cpu import build
from maelab.models.cpu.choice import ATTENTION, METHOD, Choice, Workload

FILE_NAME = "maelab_cpu_choices.json"


def cache_file() -> Path:
    from torch.utils.cpp_extension import get_default_build_root

    return Path(get_default_build_root()) / FILE_NAME


def entry_key(workload: Workload) -> str:
    paths = "+".join(ATTENTION)  # a new candidate path or timing method measures anew
    return (f"{build.extension_name()}|torch {torch.__version__}|{torch.get_num_threads()} threads|{paths}|"
            f"timing {METHOD}|{workload.key()}")


def _entries(path: Path) -> dict:
    try:
        entries = json.loads(path.read_text())
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return {}


def cached_choice(workload: Workload) -> Optional[Choice]:
    """The choice measured before on this CPU, torch and thread count for ``workload``; None when there is none."""
    entry = _entries(cache_file()).get(entry_key(workload))
    try:
        return None if entry is None else Choice.from_dict(entry, "measured before, cached")
    except (KeyError, TypeError, ValueError):
        return None


def store_choice(workload: Workload, choice: Choice) -> None:
    """Add ``choice`` to the cache file (atomically; a write that fails leaves the cache as it was)."""
    path = cache_file()
    entries = _entries(path)
    entries[entry_key(workload)] = choice.as_dict()
    try:
        write_text_atomic(path, json.dumps(entries, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only or full cache folder: the next run measures again
