"""Pure figure builders: arrays and metric records in, a matplotlib ``Figure`` out.

No pyplot: ``matplotlib.figure.Figure`` renders with the Agg canvas, so nothing needs a display and
no figure is kept alive by a global registry. Every figure has a fixed size (``figsize`` x ``DPI``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

DPI = 100
CELL_IN = 1.2  # inches per image (and its gap) in a grid
GAP_PX = 2  # white gap between images, in image pixels
LABEL_IN = 1.5  # left margin of a grid, for the row labels
TITLE_IN = 0.8  # top margin of a grid, for the title and column titles of up to two lines
LINE_IN = 0.16  # more top margin per line of a column title beyond two
MARGIN_IN = 0.1  # right and bottom margins
COLORBAR_IN = 1.1  # right margin of a grid with a colorbar: the bar, its ticks and its label

LR_LABEL = "lr_at (the schedule training used)"
REQUESTED_LABEL = "requested (mask_ratio_at)"
EFFECTIVE_LABEL = "seen by the encoder (effective_ratio)"
LOGGED_LABEL = "logged in metrics.jsonl"
EPOCH_LABEL = "epoch (after that many epochs of training)"  # epochs count from 1 in every figure

Series = tuple[Sequence[float], Sequence[float]]  # (x values, y values)


def mosaic(rows: Sequence[np.ndarray], gap: int = GAP_PX) -> np.ndarray:
    """Rows of images ``[N, H, W, 3]`` (floats, clipped to [0, 1]) -> one ``[R*(H+gap)-gap, N*(W+gap)-gap, 3]``
    image with white gaps between the cells."""
    n, h, w, _ = rows[0].shape
    out = np.ones((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), dtype=np.float32)
    for r, imgs in enumerate(rows):
        for c in range(n):
            out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = np.clip(imgs[c], 0.0, 1.0)
    return out


def grid_size(n_rows: int, n_cols: int, img: int = 32, gap: int = GAP_PX, colorbar: bool = False,
              title_lines: int = 2) -> tuple[float, float]:
    """The (width, height) in inches of an ``image_grid`` of ``img``-pixel images (with its colorbar, and column
    titles of ``title_lines`` lines)."""
    scale = CELL_IN / (img + gap)  # inches per image pixel
    return (LABEL_IN + scale * (n_cols * (img + gap) - gap) + (COLORBAR_IN if colorbar else MARGIN_IN),
            _top_in(title_lines) + scale * (n_rows * (img + gap) - gap) + MARGIN_IN)


def _top_in(title_lines: int) -> float:
    return TITLE_IN + LINE_IN * max(0, title_lines - 2)


def image_grid(rows: Sequence[tuple[str, np.ndarray]], col_titles: Sequence[str], title: str,
               colorbar: Optional[tuple[str, str]] = None) -> Figure:
    """One row per ``(label, images)``, one column per image, drawn as one mosaic (one Axes: fast).

    ``images: [N, H, W, 3]`` floats in [0, 1] (clipped for display); every row has the same shape, and
    ``col_titles`` names the N columns (e.g. the class of each image). ``colorbar``: ``(label, colormap name)``
    of a colorbar from 0 to 1 at the right, for rows drawn with that colormap.
    """
    if not rows:
        raise ValueError("image_grid needs at least one row")
    shape = rows[0][1].shape
    if any(imgs.shape != shape for _, imgs in rows) or len(col_titles) != shape[0] or shape[1] != shape[2]:
        raise ValueError(f"every row must hold square images of one shape {shape}, one per column title")
    n, size = shape[0], shape[1]
    lines = max(str(t).count("\n") + 1 for t in col_titles) if n else 1
    width, height = grid_size(len(rows), n, size, colorbar=colorbar is not None, title_lines=lines)
    fig = Figure(figsize=(width, height), dpi=DPI)
    right = COLORBAR_IN if colorbar is not None else MARGIN_IN
    ax = fig.add_axes((LABEL_IN / width, MARGIN_IN / height, 1 - (LABEL_IN + right) / width,
                       1 - (_top_in(lines) + MARGIN_IN) / height))
    ax.imshow(mosaic([imgs for _, imgs in rows]), interpolation="nearest", aspect="auto")
    pitch = size + GAP_PX
    ax.set_xticks([c * pitch + (size - 1) / 2 for c in range(n)], list(col_titles), fontsize=9)
    ax.set_yticks([r * pitch + (size - 1) / 2 for r in range(len(rows))], [label for label, _ in rows], fontsize=10)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if colorbar is not None:
        _colorbar(fig, ax, *colorbar)
    fig.suptitle(title, fontsize=11, y=1 - 0.08 / height, va="top")
    return fig


def _colorbar(fig: Figure, ax: Axes, label: str, cmap: str) -> None:
    """A 0-to-1 colorbar of ``cmap`` in the right margin, as tall as ``ax``, labelled ``label``."""
    width = fig.get_figwidth()
    _, y0, _, h = ax.get_position().bounds
    cax = fig.add_axes((1 - (COLORBAR_IN - 0.12) / width, y0, 0.15 / width, h))
    fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), colormaps[cmap]), cax=cax, label=label)
    cax.tick_params(labelsize=8)
    cax.yaxis.label.set_fontsize(9)


def masked_inputs_figure(original: np.ndarray, masked: np.ndarray, names: Sequence[str], ratio_text: str,
                         title: str = "Test images and their masks") -> Figure:
    """Report Fig. 1: originals above their masked versions. ``original``, ``masked``: [N, H, W, 3] in [0, 1]."""
    return image_grid([("original", original), (f"masked\n{ratio_text}", masked)], names, title)


def reconstructions_figure(original: np.ndarray, masked: np.ndarray, recon: np.ndarray, names: Sequence[str],
                           ratio_text: str, title: str = "Reconstructions") -> Figure:
    """Report Fig. 3: original / masked / reconstruction rows, each [N, H, W, 3] in [0, 1]."""
    return image_grid([("original", original), (f"masked\n{ratio_text}", masked), ("reconstruction", recon)],
                      names, title)


def mask_ratios_figure(original: np.ndarray, per_ratio: Sequence[tuple[str, np.ndarray, np.ndarray]],
                       names: Sequence[str], title: str = "The same images at several mask ratios") -> Figure:
    """Report Figs. 4-5: the originals, then a masked row and a reconstructed row per ``(ratio text, masked,
    recon)``; every array [N, H, W, 3] in [0, 1]."""
    rows = [("original", original)]
    for text, masked, recon in per_ratio:
        rows += [(f"masked\n{text}", masked), (f"reconstructed\n{text}", recon)]
    return image_grid(rows, names, title)


def compare_figure(original: np.ndarray, masked: np.ndarray, recons: Sequence[tuple[str, np.ndarray]],
                   names: Sequence[str], ratio_text: str, title: str) -> Figure:
    """Report Fig. 7: the same masked images reconstructed by several runs, one ``(run label, recon)`` row each."""
    return image_grid([("original", original), (f"masked\n{ratio_text}", masked), *recons], names, title)


def lr_schedule_figure(steps: Sequence[int], lrs: Sequence[float], *, warmup_steps: int, steps_per_epoch: int,
                       logged: Optional[Series] = None, title: str = "Learning-rate schedule") -> Figure:
    """The learning rate per step (``lrs[i]`` at ``steps[i]``), the end of warm-up, and logged values as dots."""
    fig = Figure(figsize=(7.0, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(steps, lrs, color="C0", lw=1.8, label=LR_LABEL)
    if warmup_steps > 0:
        ax.axvline(warmup_steps, color="gray", ls=":", label=f"end of warm-up (step {warmup_steps})")
    if logged is not None and len(logged[0]):
        ax.plot(logged[0], logged[1], "o", ms=3.5, color="C1", label=LOGGED_LABEL)
    ax.set_xlabel("training step")
    ax.set_ylabel("learning rate")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.1e"))
    _epoch_axis(ax, steps_per_epoch)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return fig


def mask_schedule_figure(steps: Sequence[int], requested: Sequence[float], effective: Sequence[float], *,
                         steps_per_epoch: int, logged: Optional[Series] = None,
                         title: str = "Mask-ratio schedule") -> Figure:
    """The ratio the schedule asked for and the ratio the encoder saw (after rounding and clamping) per step."""
    fig = Figure(figsize=(7.0, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(steps, requested, color="gray", ls="--", lw=1.2, drawstyle="steps-post", label=REQUESTED_LABEL)
    ax.plot(steps, effective, color="C2", lw=1.8, drawstyle="steps-post", label=EFFECTIVE_LABEL)
    if logged is not None and len(logged[0]):
        ax.plot(logged[0], logged[1], "o", ms=3.5, color="C1", label=LOGGED_LABEL)
    ax.set_xlabel("training step")
    ax.set_ylabel("mask ratio")
    ax.set_ylim(-0.03, 1.03)
    _epoch_axis(ax, steps_per_epoch)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return fig


def _epoch_axis(ax: Axes, steps_per_epoch: int) -> None:
    """A secondary x axis on top in epochs done (step ``k * steps_per_epoch`` = the end of epoch k, counted from 1 as
    in curves.png and the ablation's figures), with whole-number ticks."""
    spe = max(steps_per_epoch, 1)
    top = ax.secondary_xaxis("top", functions=(lambda s: np.asarray(s) / spe, lambda e: np.asarray(e) * spe))
    top.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    top.set_xlabel(EPOCH_LABEL)

