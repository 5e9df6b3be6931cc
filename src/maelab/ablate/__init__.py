"""Ablations: a suite of variants × seeds run into one folder, results.csv, and report.md with error bars.

The names below load on first use (PEP 562), so that the CLI can register ``maelab ablate`` without importing
torch and the training engine."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"build_report": "maelab.ablate.report", "run_suite": "maelab.ablate.runner",
          "Suite": "maelab.ablate.suite", "load_suite": "maelab.ablate.suite"}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'maelab.ablate' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
