"""The demo: the whole small loop on CPU — pretrain, probe, k-NN, reconstruction, figures — on CIFAR-10 when
it can be had, else on the synthetic set; then `maelab eval`'s table of the pretrained encoder against the random-init
and zero-prediction floors (:mod:`maelab.eval.floors`)."""

from __future__ import annotations

import time
from pathlib import Path

from maelab.config import Config, load_config
from maelab.data import on_disk
from maelab.engine.pretrain import pretrain
from maelab.eval.floors import evaluate_against_floors, write_eval
from maelab.eval.monitors import epoch_hooks
from maelab.eval.table import format_table

DEMO_CONFIG = Path(__file__).parent / "demo.yaml"


def write_figures(run_dir: Path) -> list[Path]:
    """The run's figures (when the figures module is present)."""
    try:
        from maelab.viz import write_figures as write
    except ImportError:
        return []
    return write(run_dir)


def demo_config(overrides: list[str]) -> Config:
    """The demo's config with ``overrides``; without CIFAR-10 on disk, the synthetic set at its own sizes (the
    demo's CIFAR-10 limits, 20,000 training images, are more than it holds), said in one line."""
    cfg = load_config(DEMO_CONFIG, overrides)
    if cfg.data.name == "cifar10" and not on_disk(cfg.data):
        print("CIFAR-10 not found (set MAELAB_DATA_DIR or data.root): the demo uses the synthetic set instead")
        cfg = load_config(DEMO_CONFIG, ["data.limit_train=null", "data.limit_test=null", *overrides,
                                        "data.name=synthetic"])
    return cfg


def run_demo(overrides: list[str]) -> None:
    """Pretrain the demo config, evaluate it and its floor, draw the figures, print the table."""
    cfg = demo_config(overrides)
    print(f"demo: pretraining a '{cfg.model.preset}' MAE on {cfg.data.name} for {cfg.optim.epochs} epochs")
    start = time.perf_counter()
    run_dir = pretrain(cfg, monitors=epoch_hooks)
    print(f"pretraining took {time.perf_counter() - start:.0f} s; evaluating (probe, k-NN, reconstruction) ...")
    result, rows, notes = evaluate_against_floors(run_dir, [])  # `maelab eval RUN`'s evaluation and table
    print(format_table(rows, notes))
    print(f"wrote {write_eval(run_dir, result)}")
    for path in write_figures(run_dir):
        print(f"figure: {path}")
    print(f"run directory: {run_dir} (config.yaml, metrics.jsonl, tensorboard/, checkpoints/, eval/, figures/)")
