"""The demo: the whole small loop on CPU — pretrain, probe, k-NN, reconstruction, figures — on CIFAR-10 when
it can be had, else on the synthetic set; then a table of the pretrained encoder against the random-init floor."""

from __future__ import annotations

import time
from pathlib import Path

from maelab.cli import DEMO_CONFIG
from maelab.config import load_config
from maelab.data import on_disk
from maelab.engine.pretrain import pretrain
from maelab.eval import commands


def evaluate(run_dir: Path) -> dict[str, dict[str, float]]:
    """Probe, k-NN and reconstruction of the pretrained encoder and of its random-init floor."""
    rows: dict[str, dict[str, float]] = {"pretrained": {}, "random init": {}}
    for label, random_init in (("pretrained", False), ("random init", True)):
        start = time.perf_counter()
        rows[label]["probe top-1 %"] = commands.run_probe(run_dir, [], random_init=random_init)[1]["top1"]
        rows[label]["k-NN top-1 %"] = commands.run_knn(run_dir, [], random_init=random_init)[1]["top1"]
        recon = commands.run_recon(run_dir, [], random_init=random_init)[1]
        rows[label]["PSNR masked dB"] = recon["psnr_masked"]
        rows[label]["SSIM full"] = recon["ssim_full"]
        rows[label]["eval seconds"] = time.perf_counter() - start
    # predicting zeros (the dataset mean; under norm_pix_loss each patch's own mean) does not depend on the weights
    rows["zero prediction"] = {"PSNR masked dB": recon["psnr_masked_zero_pred"],
                               "SSIM full": recon["ssim_full_zero_pred"]}
    return rows


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per encoder, one column per metric."""
    columns = list(rows["pretrained"])
    lines = [f"{'':<16}" + "".join(f"{c:>16}" for c in columns)]
    for label, values in rows.items():
        cells = "".join(f"{values[c]:>16.2f}" if c in values else f"{'-':>16}" for c in columns)
        lines.append(f"{label:<16}" + cells)
    return "\n".join(lines)


def write_figures(run_dir: Path) -> list[Path]:
    """The run's figures (when the figures module is present)."""
    try:
        from maelab.viz import write_figures as write
    except ImportError:
        return []
    return write(run_dir)


def run_demo(overrides: list[str]) -> None:
    """Pretrain the demo config, evaluate it and its floor, draw the figures, print the table."""
    cfg = load_config(DEMO_CONFIG, overrides)
    if cfg.data.name == "cifar10" and not on_disk(cfg.data):
        print("CIFAR-10 not found (set MAELAB_DATA_DIR or data.root): the demo uses the synthetic set instead")
        cfg = load_config(DEMO_CONFIG, [*overrides, "data.name=synthetic"])
    print(f"demo: pretraining a '{cfg.model.preset}' MAE on {cfg.data.name} for {cfg.optim.epochs} epochs")
    start = time.perf_counter()
    run_dir = pretrain(cfg)
    print(f"pretraining took {time.perf_counter() - start:.0f} s; evaluating (probe, k-NN, reconstruction) ...")
    rows = evaluate(run_dir)
    print(format_table(rows))
    for path in write_figures(run_dir):
        print(f"figure: {path}")
    print(f"run directory: {run_dir} (config.yaml, metrics.jsonl, tensorboard/, checkpoints/, eval/, figures/)")
