"""Figures (headless matplotlib): pure builders in ``plots``, fixed samples in ``samples``, run-level writers
(``maelab figures``) in ``run_figures``, runs side by side in ``compare``, training curves in ``curves``."""

from __future__ import annotations

from maelab.viz.compare import run_labels, write_compare, write_compare_runs
from maelab.viz.curves import curves_figure
from maelab.viz.plots import (
    compare_figure,
    image_grid,
    lr_schedule_figure,
    mask_ratios_figure,
    mask_schedule_figure,
    masked_inputs_figure,
    reconstructions_figure,
)
from maelab.viz.run_figures import (
    DEFAULT_RATIOS,
    FIGURE_NAMES,
    FIGURE_SEED,
    schedule_series,
    write_figures,
)
from maelab.viz.samples import masked_view, reconstruct, sample_indices

__all__ = [
    "DEFAULT_RATIOS",
    "FIGURE_NAMES",
    "FIGURE_SEED",
    "compare_figure",
    "curves_figure",
    "image_grid",
    "lr_schedule_figure",
    "mask_ratios_figure",
    "mask_schedule_figure",
    "masked_inputs_figure",
    "masked_view",
    "reconstruct",
    "reconstructions_figure",
    "run_labels",
    "sample_indices",
    "schedule_series",
    "write_compare",
    "write_compare_runs",
    "write_figures",
]
