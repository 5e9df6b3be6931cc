"""Parameter names across maelab versions: a state dict written by an older maelab, renamed to today's names.

Today's names are timm's (``vision_transformer.py``): ``blocks.N.mlp.fc1`` / ``mlp.fc2``. Before 2026-11-30 the
MLP was an ``nn.Sequential`` (``mlp.0`` / ``mlp.2``). Checkpoints and exports written then still load: their
readers pass the weights through :func:`upgrade_state_dict`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")

# (pattern, replacement) applied to each key, in order
RENAMES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(^|\.)mlp\.0\."), r"\1mlp.fc1."),
    (re.compile(r"(^|\.)mlp\.2\."), r"\1mlp.fc2."),
)


def upgrade_key(key: str) -> str:
    """One parameter name in today's naming (unchanged when it already is)."""
    for pattern, replacement in RENAMES:
        key = pattern.sub(replacement, key)
    return key


def upgrade_state_dict(state: Mapping[str, T]) -> dict[str, T]:
    """A state dict (model or encoder weights) with every key in today's naming; values and order unchanged."""
    return {upgrade_key(k): v for k, v in state.items()}


__all__ = ["upgrade_key", "upgrade_state_dict"]
