"""The resolution of an accuracy: on N test images one image is 100 / N points, the step below which two runs tie.

The number of test images comes from the ``test_images`` the runs' eval JSONs record (probe, k-NN, fine-tune,
scratch); :func:`recorded_test_images` keeps it in OUT/test_images.json, so that a report rebuilt without the runs
(``maelab report`` on a folder whose runs were moved or archived) still says it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import yaml

from maelab.ablate.results import BEST_PROBE, EVAL_METRICS, FAILED, FLOOR, Row, split_epoch
from maelab.atomic import write_text_atomic
from maelab.run_layout import RunLayout, epoch_tag

IMAGES_NAME = "test_images.json"
# results metric -> the eval/<name>.json it comes from
EVAL_OF = {metric: name for name, keys in EVAL_METRICS.items() for metric in keys.values()} | {BEST_PROBE: "probe"}
TestImages = dict[str, list[int]]  # results metric -> the distinct numbers of test images of its runs, ascending


def is_accuracy(metric: str) -> bool:
    """A top-1 / top-5 accuracy in % (at any epoch): its resolution is 100 / test images."""
    return split_epoch(metric)[0].endswith(("_top1", "_top5"))


def recorded_test_images(out: Path, rows: list[Row]) -> TestImages:
    """The test images of each accuracy metric, from the eval JSONs of the runs present in ``out`` and the
    OUT/test_images.json an earlier report saved (the runs win); the merge is saved back when it changed."""
    path = Path(out) / IMAGES_NAME
    saved = json.loads(path.read_text()) if path.is_file() else {}
    merged = {**saved, **_from_runs(Path(out), rows)}
    if merged != saved:
        write_text_atomic(path, json.dumps(merged, indent=2, sort_keys=True))
    return merged


def _from_runs(out: Path, rows: list[Row]) -> TestImages:
    found: dict[str, set[int]] = {}
    read: dict[Path, Optional[int]] = {}
    for r in rows:
        metric, epoch = split_epoch(r.metric)
        if metric not in EVAL_OF or not r.run_dir or r.status == FAILED:
            continue
        path = RunLayout(out / r.run_dir).eval_result(EVAL_OF[metric], r.variant == FLOOR,
                                                      None if epoch is None else epoch_tag(epoch))
        if path not in read:
            read[path] = _test_images(path)
        if read[path]:
            found.setdefault(r.metric, set()).add(read[path])
    return {metric: sorted(counts) for metric, counts in found.items()}


def _test_images(path: Path) -> Optional[int]:
    """The ``test_images`` an eval JSON records (None: no such file, or one written before it was recorded)."""
    try:
        value = json.loads(path.read_text()).get("test_images")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def resolution(metric: str, images: Optional[TestImages]) -> str:
    """"one test image is 0.2 points of accuracy (500 test images)" for an accuracy metric (said generically where
    the runs did not record their test images); "" for any other metric."""
    if not is_accuracy(metric):
        return ""
    counts = (images or {}).get(metric, [])
    if not counts:
        return "one test image is 100 / N points of accuracy on N test images (the runs did not record N)"
    if len(counts) == 1:
        return f"one test image is {100 / counts[0]:.3g} points of accuracy ({counts[0]:,} test images)"
    return (f"one test image is {100 / counts[-1]:.3g} to {100 / counts[0]:.3g} points of accuracy "
            f"({counts[0]:,} to {counts[-1]:,} test images)")


def shown_split(run_dir: Path) -> str:
    """The split a run's figures show: "training" for a run on an unlabeled image folder (it has no test split:
    :meth:`maelab.data.Dataset.eval_images`), else "test"."""
    from maelab.data.folder import is_labelled

    try:
        data = (yaml.safe_load(RunLayout(run_dir).config.read_text()) or {}).get("data") or {}
        root = Path(str(data.get("root"))).expanduser()
        unlabeled = data.get("name") == "folder" and root.is_dir() and not is_labelled(root)
    except (OSError, yaml.YAMLError, AttributeError):
        return "test"
    return "training" if unlabeled else "test"
