"""Figures of an ablation: accuracy per variant with error bars (report Fig. 6) and per-epoch curves per variant."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from maelab.viz.plots import DPI


def variant_bars_figure(values: Mapping[str, Mapping[str, Sequence[float]]], floors: Mapping[str, Sequence[float]],
                        ylabel: str, title: str, floor_names: Optional[Mapping[str, str]] = None) -> Figure:
    """Grouped bars: one group per variant, one bar per metric (``values[metric][variant]`` = the seeds' defined
    values), the mean as the bar, ± one std as the error bar, each seed as a dot; ``floors[metric]`` (the floor's
    values: the random-init encoder's, or the one ``floor_names[metric]`` names) as a dashed line of the metric's
    colour. Undefined statistics are not drawn (NaN): no bar without values, no error bar with one value (its
    sample std is undefined, not 0). The y axis starts at the lowest floor drawn, or at zero without one
    (:func:`accuracy_axis`)."""
    metrics = list(values)
    variants = list(dict.fromkeys(v for per in values.values() for v in per))
    fig = Figure(figsize=(max(6.0, 1.1 * len(variants) * max(1, len(metrics)) + 1.5), 4.5), dpi=DPI,
                 layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(metrics))
    x = np.arange(len(variants))
    for i, metric in enumerate(metrics):
        pos = x - 0.4 + width * (i + 0.5)
        seeds = [np.asarray(values[metric].get(v, []), dtype=float) for v in variants]
        means = [s.mean() if len(s) else np.nan for s in seeds]
        stds = [s.std(ddof=1) if len(s) > 1 else np.nan for s in seeds]
        ax.bar(pos, means, width * 0.9, yerr=stds, capsize=3, color=f"C{i}", alpha=0.75, label=metric)
        for p, s in zip(pos, seeds, strict=True):
            ax.plot(np.full(len(s), p), s, "o", ms=3, color="black", alpha=0.6)
        floor = floors.get(metric)
        if floor is not None and len(floor):
            ax.axhline(float(np.mean(floor)), color=f"C{i}", ls="--", lw=1.2,
                       label=f"{metric}: {(floor_names or {}).get(metric, 'random-init floor')} ({np.mean(floor):.2f})")
    ax.set_xticks(x, variants, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    accuracy_axis(ax, [v for per in values.values() for s in per.values() for v in s],
                  [float(np.mean(f)) for f in floors.values() if len(f)])
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.legend(fontsize=8, loc="outside lower center", ncols=2)  # below the axes: no bar or floor line hidden
    return fig


def accuracy_axis(ax: Axes, values: Iterable[float], floors: Sequence[float] = ()) -> None:
    """The y range of an accuracy axis. It starts at the lowest floor drawn (the random-init encoder's, or the
    from-scratch baseline's), rounded down to a whole unit, so a bar's visible height is its gain over that
    baseline; without a floor it starts at zero. Never higher than a value (a seed below the floor stays in view).
    Starting at the data's own minimum, as autoscaling does, makes a difference of a point look like a doubling."""
    every = [float(v) for v in values if np.isfinite(v)]
    if not every and not floors:
        return
    lo = math.floor(min([*floors, *every])) if floors else 0.0
    hi = max([*floors, *every])
    ax.set_ylim(max(0.0, lo), hi + max(1.0, 0.15 * (hi - lo)))


def variant_curves_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, ylabel: str,
                          title: str, ylim: Optional[tuple[float, float]] = None) -> Figure:
    """One line per variant: ``curves[variant] = (x, y)`` (e.g. the mask ratio the encoder saw per epoch, epochs
    counted from 1); whole-number ticks on the x axis (epochs)."""
    fig = Figure(figsize=(7.0, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for i, (name, (x, y)) in enumerate(curves.items()):
        ax.plot(x, y, marker="o", ms=3, lw=1.5, color=f"C{i % 10}", label=name, drawstyle="steps-post")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def epoch_curves_figure(curves: Mapping[str, Mapping[int, Sequence[float]]], ylabel: str, title: str,
                        floor: Sequence[float] = ()) -> Figure:
    """Accuracy versus epoch: one line per variant through the mean of its seeds at each epoch
    (``curves[variant][epoch]`` = the seeds' values), ± one std as error bars (none with one seed), each seed as a
    dot; the mean of ``floor`` (the random-init floor) as a dashed gray line. Epochs count from 1 (after that many
    epochs); the y axis starts at the floor, or at zero without one (:func:`accuracy_axis`)."""
    fig = Figure(figsize=(7.0, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for i, (name, per_epoch) in enumerate(curves.items()):
        epochs = [e for e, v in sorted(per_epoch.items()) if len(v)]
        seeds = [np.asarray(per_epoch[e], dtype=float) for e in epochs]
        stds = [s.std(ddof=1) if len(s) > 1 else np.nan for s in seeds]
        ax.errorbar(epochs, [s.mean() for s in seeds], yerr=stds, marker="o", ms=4, lw=1.5, capsize=3,
                    color=f"C{i % 10}", label=name)
        for e, s in zip(epochs, seeds, strict=True):
            ax.plot(np.full(len(s), e), s, ".", ms=3, color=f"C{i % 10}", alpha=0.5)
    if len(floor):
        ax.axhline(float(np.mean(floor)), color="gray", ls="--", lw=1.2,
                   label=f"random-init floor ({np.mean(floor):.2f})")
    ax.set_xticks(sorted({e for per_epoch in curves.values() for e in per_epoch}))
    accuracy_axis(ax, [v for per_epoch in curves.values() for s in per_epoch.values() for v in s],
                  [float(np.mean(floor))] if len(floor) else [])
    ax.set_xlabel("epoch (checkpoint kept after that many epochs)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
