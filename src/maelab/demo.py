"""The demo: the whole small loop on CPU — pretrain, probe, k-NN, reconstruction, figures — on CIFAR-10 when
it can be had, else on the synthetic set; then a table of the pretrained encoder against the random-init floor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from maelab.config import Config, load_config
from maelab.data import on_disk
from maelab.engine.pretrain import pretrain
from maelab.eval import commands
from maelab.eval.monitors import epoch_hooks
from maelab.eval.table import format_table, recon_cells  # the table `maelab eval` prints too
from maelab.progress import Progress

DEMO_CONFIG = Path(__file__).parent / "demo.yaml"


def evaluate(run_dir: Path, progress: bool = True) -> tuple[dict[str, dict[str, Optional[float]]], list[str]]:
    """Probe, k-NN and reconstruction of the pretrained encoder and of its random-init floor, with their progress
    (``progress``: a bar on a terminal, a line per evaluation otherwise; :class:`maelab.progress.Progress`).

    Returns the table's rows (None: an undefined value) and one note per undefined value with its reason.
    """
    rows: dict[str, dict[str, Optional[float]]] = {"pretrained": {}, "random init": {}}
    notes: list[str] = []
    # every=0: a plain line after each of the 6 evaluations (each takes seconds to minutes: a modest cadence)
    with Progress(6, "demo evaluation", unit="evaluation", every=0.0, enabled=progress) as bar:
        for label, random_init in (("pretrained", False), ("random init", True)):
            start = time.perf_counter()
            for column, name in (("probe top-1 %", "probe"), ("k-NN top-1 %", "knn")):
                bar.set_postfix(stage=f"{name}, {label}")
                rows[label][column] = getattr(commands, f"run_{name}")(run_dir, [], random_init=random_init)[1]["top1"]
                bar.update()
            bar.set_postfix(stage=f"recon, {label}")
            recon = commands.run_recon(run_dir, [], random_init=random_init)[1]
            bar.update()
            rows[label].update(recon_cells(recon, "", label, notes))
            rows[label]["eval seconds"] = time.perf_counter() - start
    # predicting zeros (the dataset mean; under norm_pix_loss each patch's own mean) does not depend on the weights
    rows["zero prediction"] = recon_cells(recon, "_zero_pred", "zero prediction", notes)
    return rows, notes


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
    rows, notes = evaluate(run_dir, progress=cfg.train.progress)
    print(format_table(rows, notes))
    for path in write_figures(run_dir):
        print(f"figure: {path}")
    print(f"run directory: {run_dir} (config.yaml, metrics.jsonl, tensorboard/, checkpoints/, eval/, figures/)")
