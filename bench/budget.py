"""Fit a pretraining run to a wall-clock budget: measure the step rate on the first steps, then choose the epochs.

Used by ``bench/speedrun.py --minutes M``. The rate comes from a real short run of the same config (same model,
augmentation, threads and device) on a few batches: its last logged window of steps, after the first steps'
warm-up (allocations, kernel loading). The epoch count is the largest whole number of epochs whose images fit
``minutes`` at that rate, times ``margin`` for what a step window does not see (the per-epoch checkpoint, the
epoch's index draw). The run's warm-up and cosine are set in epochs or fractions of the run, so they complete
within the budget by construction.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from maelab.config import Config, load_config, to_dict
from maelab.engine.pretrain import pretrain
from maelab.errors import UserError
from maelab.eval.monitors import epoch_hooks

CALIBRATION_STEPS = 12  # steps of the short run; the rate is read from its last window of LOG_EVERY steps
LOG_EVERY = 4


def measure_img_per_s(cfg: Config, train_images: int, steps: int = CALIBRATION_STEPS) -> float:
    """Images/s of ``cfg``'s pretraining step, from its last ``LOG_EVERY`` of ``steps`` steps (a temporary run on
    the first ``steps`` batches' worth of its ``train_images`` training images, fewer if it has fewer)."""
    limit = min(steps * cfg.optim.batch_size, train_images)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"data.limit_train={limit}", "optim.epochs=1", "eval.knn_every=0",
                     f"train.log_every={LOG_EVERY}", "train.progress=false", "train.tensorboard=false",
                     f"out_dir={Path(tmp) / 'calibration'}", "overwrite=false", "train.stop_after_epochs=null"]
        run_dir = pretrain(load_config(None, overrides, base=to_dict(cfg)))
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    windows = [r["img_per_s"] for r in records if r["kind"] == "step"]
    return float(windows[-1])


def epochs_within(minutes: float, img_per_s: float, train_images: int, margin: float = 0.97) -> int:
    """The most whole epochs of ``train_images`` that ``minutes`` hold at ``img_per_s`` (times ``margin``).

    Raises UserError when not even one epoch fits (the budget is too small for this config and machine)."""
    epochs = math.floor(minutes * 60 * img_per_s * margin / train_images)
    if epochs < 1:
        need = train_images / (img_per_s * margin) / 60
        raise UserError(f"{minutes:g} minutes hold less than one epoch of {train_images} images at {img_per_s:.0f} "
                        f"img/s: give --minutes {math.ceil(need * 10) / 10:g} or more, or fewer images "
                        "(data.limit_train)")
    return epochs


# the probe protocols a budgeted run reports: maelab's default probe, and the reference protocol
# (AdamW lr 1e-3, weight decay 1e-4, batch 256, cosine over 100 epochs, the last epoch's head), each on the final
# layer and on every block and concatenation of blocks (probe.layers=all: the best is recorded beside the final)
PROBES: dict[str, list[str]] = {
    "default": ["probe.layers=all"],
    "reference": ["probe.optimizer=adamw", "probe.lr=1e-3", "probe.weight_decay=1e-4", "probe.epochs=100",
                  "probe.batch_size=256", "probe.layers=all"],
}


def resume_or_keep(run_dir: Path) -> Path:
    """Finish the pretraining of ``run_dir`` from its checkpoint (nothing to do when it had finished)."""
    from maelab.engine.pretrain import resume
    from maelab.engine.resume_checks import NothingToTrain

    try:
        return resume(run_dir, [], monitors=epoch_hooks)
    except NothingToTrain:
        return Path(run_dir)


def run_budgeted(cfg: Config, minutes: float, eval_overrides: list[str], probes: list[str],
                 save: Callable[[dict[str, Any]], None], keep_epochs: bool = False,
                 resume_dir: Optional[Path] = None) -> dict[str, Any]:
    """Calibrate, pretrain ``cfg`` for the epochs that fit ``minutes``, then probe (each protocol of ``probes``),
    k-NN, and the same for the random-init floor. ``save`` gets the growing record after every stage, so that a
    run cut short keeps what it measured. ``keep_epochs``: no calibration, ``cfg.optim.epochs`` as configured (a
    recipe already sized for ``minutes`` on this machine, e.g. run with fewer threads beside other seeds);
    ``within_budget`` then says whether its wall time held the minutes. ``resume_dir``: a run of this config cut
    short (a killed session) goes on from its last checkpoint, then is evaluated (``pretrain_s`` is then this
    process's part only, and ``within_budget`` is not measured)."""
    from maelab.data import load_dataset
    from maelab.eval.commands import run_knn, run_probe

    start = time.perf_counter()
    train_images = len(load_dataset(cfg.data, cfg.train.seed).x_train)
    rate = None if keep_epochs or resume_dir else measure_img_per_s(cfg, train_images)
    epochs = cfg.optim.epochs if rate is None else epochs_within(minutes, rate, train_images)
    record: dict[str, Any] = {"minutes": minutes, "calibration_img_per_s": rate, "epochs": epochs,
                              "epochs_from": "config" if keep_epochs else "calibration",
                              "train_images": train_images, "calibration_s": time.perf_counter() - start}
    save(record)
    begin = time.perf_counter()
    if resume_dir is None:
        run_dir = pretrain(replace(cfg, optim=replace(cfg.optim, epochs=epochs)), monitors=epoch_hooks)
    else:
        run_dir = resume_or_keep(resume_dir)
    record.update(pretrain_s=time.perf_counter() - begin, run_dir=str(run_dir), resumed=resume_dir is not None)
    if resume_dir is None:
        record["img_per_s"] = epochs * train_images / record["pretrain_s"]
        record["within_budget"] = record["pretrain_s"] <= minutes * 60
    save(record)
    for floor in (False, True):
        prefix = "floor_" if floor else ""
        for name in probes:
            _, result = run_probe(run_dir, [*eval_overrides, *PROBES[name]], random_init=floor)
            record[f"{prefix}probe_{name}_top1"] = result["top1"]  # the final layer (probe.layers=last, or all)
            if "best" in result:  # probe.layers=all: every block and concatenation; the best, selected on test
                record[f"{prefix}probe_{name}_best"] = {k: result["best"][k] for k in ("name", "top1")}
            save(record)
        _, result = run_knn(run_dir, eval_overrides, random_init=floor)
        record[f"{prefix}knn_top1"] = result["top1"]
        save(record)
    record["total_s"] = time.perf_counter() - start
    save(record)
    return record
