"""Frozen features cached on disk, per checkpoint: RUN_DIR/eval/cache/<key>/<split>.<layer>.<pool>.pt.

A probe of many layers or a second evaluation of the same checkpoint (probe, then k-NN, then the probe with
another optimizer) reads the pooled vectors instead of running the encoder again. ``<key>`` is a hash of
everything the features depend on (:func:`cache_key`): the checkpoint (path, size, mtime in ns, training step;
or random init), the seed, the model's architecture (with its image size), the dataset settings and a hash of
the images and labels actually used. Training more (resume, retrain) changes the checkpoint's size/mtime/step,
so its features get a new key and the old folder of that checkpoint path is removed when the new one is
written. Each file holds one [N, D] float32 tensor: float32 so that a cached evaluation gives exactly the number
an uncached one gives (float16 would change the probe's inputs and so its result); only the pooled vectors
asked for are stored, never tokens (CIFAR-10, keras preset, probe.layers=all with mean pooling: 60,000 images x
7 layers x 128 x 4 bytes = 215 MB). Every file is written atomically; a file that cannot be read is extracted
again. ``rm -r RUN_DIR/eval/cache`` is always safe.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from maelab.atomic import atomic_file, write_text_atomic
from maelab.config import to_dict
from maelab.data import Dataset
from maelab.engine.loading import LoadedRun
from maelab.eval.protocols import Feature
from maelab.run_layout import RunLayout

CACHE_VERSION = 1
KEY_NAME = "key.json"
FINGERPRINT_CHUNK = 4096  # rows of a split hashed at a time by data_fingerprint


def cache_root(run_dir: Path) -> Path:
    """The folder holding every cached feature set of a run."""
    return RunLayout(run_dir).feature_cache


def checkpoint_identity(run: LoadedRun) -> dict[str, Any] | str:
    """The checkpoint as the cache knows it: resolved path, size (bytes), mtime (ns) and training step, or
    ``random-init``."""
    if run.checkpoint is None:
        return "random-init"
    stat = Path(run.checkpoint).stat()
    return {"path": str(Path(run.checkpoint).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "step": run.step}


def data_fingerprint(data: Dataset) -> str:
    """sha256 of the images and labels of both splits (uint8 / int64 bytes), as loaded (limits applied).

    Hashed ``FINGERPRINT_CHUNK`` rows at a time (the same digest as in one piece), so that a memory-mapped set is
    never copied into memory whole."""
    digest = hashlib.sha256()
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        for start in range(0, len(t), FINGERPRINT_CHUNK):
            digest.update(t[start:start + FINGERPRINT_CHUNK].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(run: LoadedRun, data: Dataset) -> dict[str, Any]:
    """Everything the run's frozen features of ``data`` depend on (a JSON-able dict)."""
    return {"version": CACHE_VERSION, "checkpoint": checkpoint_identity(run), "seed": run.cfg.train.seed,
            "model": asdict(run.model.spec), "data": to_dict(run.cfg)["data"], "data_source": run.data_source,
            "mean": list(data.mean), "std": list(data.std), "train_images": len(data.x_train),
            "test_images": len(data.x_test), "images": data_fingerprint(data)}


class FeatureCache:
    """One key's folder under :func:`cache_root`: load and save pooled features [N, D] float32 per split."""

    def __init__(self, root: Path, key: dict[str, Any]) -> None:
        self.root, self.key = Path(root), key
        self.dir = self.root / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def path(self, split: str, feature: Feature) -> Path:
        return self.dir / f"{split}.{feature[0]}.{feature[1]}.pt"

    def load(self, split: str, feature: Feature, rows: int, device: torch.device) -> Optional[Tensor]:
        """The cached [rows, D] float32 features, or None when absent or unreadable."""
        path = self.path(split, feature)
        if not path.is_file():
            return None
        try:
            t = torch.load(path, map_location=device, weights_only=True)
        except Exception:  # a damaged file is a miss: it is extracted and written again
            return None
        ok = isinstance(t, Tensor) and t.dtype == torch.float32 and t.ndim == 2 and len(t) == rows
        return t if ok else None

    def save(self, split: str, feature: Feature, feats: Tensor) -> None:
        """Write one [N, D] tensor atomically; the first write also writes key.json and removes the folders of
        older versions of the same checkpoint file. A write that fails (disk full) is reported, not fatal."""
        try:
            if not (self.dir / KEY_NAME).is_file():
                self._prune_stale()
                write_text_atomic(self.dir / KEY_NAME, json.dumps(self.key, indent=2, sort_keys=True))
            with atomic_file(self.path(split, feature), "wb") as f:
                torch.save(feats.detach().float().cpu().clone(), f)
        except OSError as err:
            print(f"maelab: could not cache features in {self.dir} ({err.strerror or err}); going on without",
                  file=sys.stderr)

    def _prune_stale(self) -> None:
        """Remove the folders whose key names this checkpoint's path with another size, mtime or step."""
        mine = self.key["checkpoint"]
        if not isinstance(mine, dict) or not self.root.is_dir():
            return
        for other in self.root.iterdir():
            try:
                theirs = json.loads((other / KEY_NAME).read_text())["checkpoint"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if isinstance(theirs, dict) and theirs.get("path") == mine["path"] and theirs != mine:
                shutil.rmtree(other, ignore_errors=True)


def cached_features(cache: Optional[FeatureCache], split: str, wanted: list[Feature], rows: int,
                    device: torch.device, extract: Callable[[list[Feature]], dict[Feature, Tensor]]
                    ) -> dict[Feature, Tensor]:
    """{feature: [rows, D]} for ``wanted``: read from ``cache`` where present, the rest from one call of
    ``extract(missing)`` (one forward pass per image), then saved. ``cache`` None: always extracted."""
    found = {f: cache.load(split, f, rows, device) for f in wanted} if cache is not None else {}
    missing = [f for f in wanted if found.get(f) is None]
    if missing:
        fresh = extract(missing)
        for f in missing:
            found[f] = fresh[f]
            if cache is not None:
                cache.save(split, f, fresh[f])
    return {f: found[f] for f in wanted}
