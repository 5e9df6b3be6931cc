"""Which data a result was computed on: its record in every result JSON, and the tag of a result computed on other
data than the run's own.

The rule (docs/evaluation.md): a result is keyed by the checkpoint *and* the data it was computed on, as a
model card's results are keyed by dataset and split. On the run's own data (the ``data`` section the checkpoint was
trained with) it is ``eval/<name>.json``; with ``data.*`` overrides that change the images evaluated, it is
``eval/<name>@<data tag>.json`` (``knn@test1000.json``, ``recon@folder-photos-3fa9c1.json``), so the two never
replace each other. Overrides that only say where or how the same data is read (``data.cache_dir``,
``data.download``, ``data.max_memory_gib``, the root of CIFAR-10 / PROPS, which are the official sets wherever
they are found) change nothing and tag nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Optional

from maelab.config.data import DataConfig
from maelab.data import Dataset

# the settings that decide which images are evaluated, per data.name (beside the name itself)
IDENTITY = {"folder": ("root", "image_size", "limit_train", "limit_test"),
            "synthetic": ("synthetic_train", "synthetic_test", "limit_train", "limit_test"),
            "cifar10": ("limit_train", "limit_test"), "props": ("limit_train", "limit_test")}


def data_identity(cfg: DataConfig) -> dict[str, Any]:
    """The settings of ``cfg`` that decide which images are evaluated (a folder's root resolved)."""
    ident: dict[str, Any] = {"name": cfg.name}
    for key in IDENTITY[cfg.name]:
        value = getattr(cfg, key)
        ident[key] = str(Path(value).expanduser().resolve()) if key == "root" and value else value
    return ident


def _part(key: str, value: Any) -> str:
    """A short, file-name-safe word for one changed setting: ``test1000``, ``trainall``, ``48px``, ``photos``."""
    if key == "root":
        return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(value).name)[:40] or "root"
    if key == "image_size":
        return f"{value}px"
    short = {"limit_train": "train", "limit_test": "test", "synthetic_train": "synth_train",
             "synthetic_test": "synth_test"}[key]
    return f"{short}{'all' if value is None else value}"


def data_tag(trained: Optional[DataConfig], now: DataConfig) -> Optional[str]:
    """None when ``now`` evaluates the images the run was trained with (``trained``: the checkpoint's ``data``
    section; None, unknown: no tag), else a tag naming what changed: ``test1000``, ``folder-photos-3fa9c1``
    (a folder's root is named by its last component, so a short hash of the settings keeps two roots of the same
    name apart)."""
    if trained is None:
        return None
    before, after = data_identity(trained), data_identity(now)
    if before == after:
        return None
    if before["name"] == after["name"]:  # the same source: name each setting that changed, with its new value
        changed = [k for k in after if before[k] != after[k]]
        words = [_part(k, after[k]) for k in changed]
    else:  # another source: its name, its folder, the limits that are set
        changed = ["name", *(k for k in after if k == "root" or k.startswith("limit_") and after[k] is not None)]
        words = [after["name"], *(_part(k, after[k]) for k in changed[1:])]
    if "name" in changed or "root" in changed:
        words.append(hashlib.sha256(json.dumps(after, sort_keys=True).encode()).hexdigest()[:6])
    return "-".join(words)


def join_tags(*tags: Optional[str]) -> Optional[str]:
    """The tags that are set, joined by "@" (``epoch_0010@test1000``: eval/knn@epoch_0010@test1000.json)."""
    kept = [t for t in tags if t]
    return "@".join(kept) if kept else None


def data_record(data: Dataset, cfg: DataConfig, tag: Optional[str], split: str = "test",
                images: Optional[int] = None) -> dict[str, Any]:
    """What a result records of its data: the source, where its files were read, the split the numbers are measured
    on and how many images it held (``images``; default: all of that split), both splits' sizes, the limits and
    the data tag (None: the run's own data)."""
    x = {"train": data.x_train, "test": data.x_test}[split]
    return {"name": data.name, "root": data.source, "split": split,
            "images": len(x) if images is None else images, "train_images": len(data.x_train),
            "test_images": None if data.x_test is None else len(data.x_test), "limit_train": cfg.limit_train,
            "limit_test": cfg.limit_test, "tag": tag}
