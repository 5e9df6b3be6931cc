"""Training curves from metrics.jsonl records: one panel per quantity the run logged, epochs counted from 1."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from maelab.viz.plots import DPI, EPOCH_LABEL

PANEL_IN = (5.5, 3.75)  # (width, height) of one panel, in inches
STEP_LABEL = "training step"


@dataclass
class Panel:
    """One panel of curves.png: its title (also the y label), x label and ``(xs, ys, label, style)`` series."""

    title: str
    xlabel: str
    series: list[tuple[list[float], list[float], str, str]] = field(default_factory=list)
    ylim: tuple[float | None, float | None] = (None, None)

    def add(self, records: Sequence[dict], x: Any, ykey: str, label: str, style: str) -> None:
        """Add the series ``ykey`` of ``records`` (those with a finite value) against ``x(record)``."""
        pts = [(x(r), r[ykey]) for r in records if _is_number(r.get(ykey)) and _is_number(x(r))]
        if pts:
            self.series.append(([p[0] for p in pts], [p[1] for p in pts], label, style))


def epoch_number(record: dict) -> float:
    """The epoch of a record counted from 1: an epoch record of ``epoch`` 0 is logged after the first epoch."""
    return record["epoch"] + 1 if _is_number(record.get("epoch")) else math.nan


def step_number(record: dict) -> float:
    return record["step"] if _is_number(record.get("step")) else math.nan


def curve_panels(records: Sequence[dict[str, Any]]) -> list[Panel]:
    """The panels that have data, in order: loss (per logged step and per epoch, against the training step), the
    mask ratio the encoder saw per epoch, k-NN top-1 per epoch (``knn_top1``), the GAN losses (``d_loss``,
    ``g_adv``: per step when logged per step, else per epoch)."""
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    loss = Panel("loss", STEP_LABEL)
    loss.add(steps, step_number, "loss", "loss per logged step", "-")
    loss.add(epochs, step_number, "loss", "epoch mean loss", "o-")
    ratio = Panel("mask ratio", EPOCH_LABEL, ylim=(-0.03, 1.03))
    ratio.add(epochs, epoch_number, "mask_ratio", "mask ratio seen by the encoder", "o-")
    knn = Panel("k-NN top-1 (%)", EPOCH_LABEL, ylim=(0.0, None))  # an accuracy axis starts at zero
    knn.add(epochs, epoch_number, "knn_top1", knn_label(epochs), "o-")
    per_step = any("d_loss" in r or "g_adv" in r for r in steps)
    gan = Panel("GAN loss", STEP_LABEL if per_step else EPOCH_LABEL)
    for key, label in (("d_loss", "discriminator loss (d_loss)"), ("g_adv", "generator adversarial loss (g_adv)")):
        gan.add(steps if per_step else epochs, step_number if per_step else epoch_number, key, label, "-")
    return [p for p in (loss, ratio, knn, gan) if p.series]


def knn_label(epochs: Sequence[dict[str, Any]]) -> str:
    """"k-NN top-1", naming the data when the monitor measured other data than the run's (its records'
    ``knn_data`` with a tag: eval.knn_data), e.g. "k-NN top-1 on folder pets"."""
    other = [r["knn_data"] for r in epochs if isinstance(r.get("knn_data"), dict) and r["knn_data"].get("tag")]
    if not other:
        return "k-NN top-1"
    data = other[-1]
    folder = f" {Path(data['root']).name}" if data.get("name") == "folder" and data.get("root") else ""
    return f"k-NN top-1 on {data.get('name')}{folder}"


def curves_figure(records: Sequence[dict[str, Any]], title: str = "Training curves") -> Figure:
    """curves.png: one panel per logged quantity of :func:`curve_panels` (what the run did not log takes no room),
    in one row of up to three or a 2 x 2 grid; epochs count from 1; whole-number ticks on every x axis. With nothing
    logged, one empty panel says so."""
    panels = curve_panels(records)
    cols = len(panels) if len(panels) <= 3 else 2
    rows = math.ceil(len(panels) / cols) if panels else 1
    fig = Figure(figsize=(max(7.0, PANEL_IN[0] * max(cols, 1)), PANEL_IN[1] * rows + 0.4), dpi=DPI,
                 layout="constrained")
    if not panels:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "nothing logged in metrics.jsonl yet", ha="center", va="center", transform=ax.transAxes,
                color="gray")
        ax.set_axis_off()
    for i, panel in enumerate(panels):
        _draw(fig.add_subplot(rows, cols, i + 1), panel)
    fig.suptitle(title)
    return fig


def _draw(ax: Axes, panel: Panel) -> None:
    """One panel's series, labels, grid and legend; whole-number ticks on an epoch axis."""
    for xs, ys, label, style in panel.series:
        ax.plot(xs, ys, style, ms=4, lw=1.2, label=label)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.title)
    ax.set_title(panel.title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # steps and epochs are whole numbers
    if panel.ylim != (None, None):
        ax.set_ylim(*panel.ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


__all__ = ["EPOCH_LABEL", "Panel", "curve_panels", "curves_figure", "epoch_number"]
