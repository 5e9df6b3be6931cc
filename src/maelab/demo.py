"""The demo: the whole small loop on CPU — pretrain, probe, k-NN, reconstruction, figures — on CIFAR-10 when
it can be had, else on the synthetic set; then a table of the pretrained encoder against the random-init floor."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from maelab.config import Config, load_config
from maelab.data import on_disk
from maelab.engine.pretrain import pretrain
from maelab.eval import commands
from maelab.eval.monitors import epoch_hooks
from maelab.undefined import DASH, fmt, reason_of

DEMO_CONFIG = Path(__file__).parent / "demo.yaml"
RECON_COLUMNS = {"PSNR masked dB": "psnr_masked", "SSIM full": "ssim_full"}  # table column -> recon.json key


def evaluate(run_dir: Path) -> tuple[dict[str, dict[str, Optional[float]]], list[str]]:
    """Probe, k-NN and reconstruction of the pretrained encoder and of its random-init floor.

    Returns the table's rows (None: an undefined value) and one note per undefined value with its reason.
    """
    rows: dict[str, dict[str, Optional[float]]] = {"pretrained": {}, "random init": {}}
    notes: list[str] = []
    for label, random_init in (("pretrained", False), ("random init", True)):
        start = time.perf_counter()
        rows[label]["probe top-1 %"] = commands.run_probe(run_dir, [], random_init=random_init)[1]["top1"]
        rows[label]["k-NN top-1 %"] = commands.run_knn(run_dir, [], random_init=random_init)[1]["top1"]
        recon = commands.run_recon(run_dir, [], random_init=random_init)[1]
        rows[label].update(recon_cells(recon, "", label, notes))
        rows[label]["eval seconds"] = time.perf_counter() - start
    # predicting zeros (the dataset mean; under norm_pix_loss each patch's own mean) does not depend on the weights
    rows["zero prediction"] = recon_cells(recon, "_zero_pred", "zero prediction", notes)
    return rows, notes


def recon_cells(recon: dict[str, Any], tag: str, label: str, notes: list[str]) -> dict[str, Optional[float]]:
    """The table's reconstruction cells of one row; a note (appended) for each one that is undefined."""
    cells = {}
    for column, key in RECON_COLUMNS.items():
        cells[column] = recon[key + tag]
        if cells[column] is None:
            notes.append(f"{label}, {column}: {DASH} ({reason_of(recon, key + tag)})")
    return cells


def format_table(rows: dict[str, dict[str, Optional[float]]], notes: Sequence[str] = ()) -> str:
    """A plain-text table: one row per encoder, one column per metric; "–" for an undefined or absent value,
    then the notes."""
    columns = list(rows["pretrained"])
    lines = [f"{'':<16}" + "".join(f"{c:>16}" for c in columns)]
    for label, values in rows.items():
        lines.append(f"{label:<16}" + "".join(f"{fmt(values.get(c)):>16}" for c in columns))
    return "\n".join([*lines, *notes])


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
    rows, notes = evaluate(run_dir)
    print(format_table(rows, notes))
    for path in write_figures(run_dir):
        print(f"figure: {path}")
    print(f"run directory: {run_dir} (config.yaml, metrics.jsonl, tensorboard/, checkpoints/, eval/, figures/)")
