"""The demo: the main job at small scale, on CIFAR-10 when it can be had, else on the synthetic set."""

from __future__ import annotations

import dataclasses

from maelab.cli import DEMO_CONFIG
from maelab.config import load_config
from maelab.data import find_cifar10
from maelab.engine.pretrain import pretrain
from maelab.errors import DataError


def cifar10_available(cfg_data) -> bool:
    """True when CIFAR-10 is on disk in one of the places looked in (no download attempted)."""
    try:
        find_cifar10(dataclasses.replace(cfg_data, download=False))
    except DataError:
        return False
    return True


def run_demo(overrides: list[str]) -> None:
    """Pretrain the demo config; prints what data it used and where the run is."""
    cfg = load_config(DEMO_CONFIG, overrides)
    if cfg.data.name == "cifar10" and not cifar10_available(cfg.data):
        print("CIFAR-10 not found (set MAELAB_DATA_DIR or data.root): the demo uses the synthetic set instead")
        cfg = load_config(DEMO_CONFIG, [*overrides, "data.name=synthetic"])
    print(f"demo: pretraining a '{cfg.model.preset}' MAE on {cfg.data.name} for {cfg.optim.epochs} epochs")
    run_dir = pretrain(cfg)
    print(f"demo finished: run directory {run_dir} (config.yaml, metrics.jsonl, tensorboard/, checkpoints/last.pt)")
