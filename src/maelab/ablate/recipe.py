"""What a suite's runs were trained and evaluated with, besides their length: the recipe two suites are compared on
when the page sets their verdicts side by side (page_budgets.py). seed_cifar10_cpu and seed_cifar10_gpu differ in
more than their epochs (a 4-block encoder with norm_pix targets on the CPU, probe.layers=all...), and the page says
so, so that a change of verdict is not read as the epochs' alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from maelab.ablate.suite import SuiteSpec

# settings that say where and how a run ran, not what it learned: never a difference of recipe
WHERE_AND_HOW = ("name", "out_dir", "overwrite", "optim.epochs", "data.root", "data.download", "data.url", "data.md5",
                 "data.cache_dir", "data.max_memory_gib")
KEPT_OF_TRAIN = ("train.precision",)  # train.* is the run's mechanics (device, threads, logging, checkpoints...)
SHOWN = 8  # differences named per pair of suites; the rest counted


def baseline_config(spec: SuiteSpec, folder: Path) -> Optional[dict[str, Any]]:
    """The suite's baseline run config as saved (config.yaml of its first seed whose file reads as a mapping);
    None when there is none."""
    for path in sorted((folder / "runs" / spec.baseline).glob("seed*/config.yaml")):
        try:
            tree = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(tree, dict):
            return tree
    return None


def recipe_of(config: dict[str, Any], spec: SuiteSpec) -> dict[str, Any]:
    """{dotted key: value} of a run ``config`` (:func:`baseline_config`) without :data:`WHERE_AND_HOW` and train.*
    (but :data:`KEPT_OF_TRAIN`), the suite's evaluation overrides applied."""
    flat = _flat(config)
    for override in spec.eval_overrides:
        key, _, value = override.partition("=")
        flat[key.strip()] = yaml.safe_load(value)
    return {k: v for k, v in flat.items() if k not in WHERE_AND_HOW
            and (not k.startswith("train.") or k in KEPT_OF_TRAIN)}


def differences(first: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """"model.depth 4 → default" for each key whose value differs (null reads "default": the preset's or the code's;
    a key one side lacks, "–"), sorted."""
    keys = sorted(k for k in {*first, *other} if first.get(k, "–") != other.get(k, "–"))
    return [f"{k} {_value(first.get(k, '–'))} → {_value(other.get(k, '–'))}" for k in keys]


def differences_line(first_name: str, other_name: str, found: list[str]) -> str:
    """One sentence naming what ``other_name``'s recipe changes from ``first_name``'s (at most :data:`SHOWN`)."""
    more = f", and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return f"{other_name} differs from {first_name} in more than its epochs: {', '.join(found[:SHOWN])}{more}."


def _value(value: Any) -> str:
    return "default" if value is None else str(value)  # null: the preset's or the code's default


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


__all__ = ["baseline_config", "differences", "differences_line", "recipe_of"]
