"""The report's accuracy by epoch: each run evaluated on its kept checkpoints (the suite's ``eval_epochs``), as a
table (mean ± std over seeds per variant and epoch) and as accuracy-versus-epoch curves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from maelab.ablate.results import FLOOR, Row, at_epoch, split_epoch, values_of
from maelab.ablate.suite import SuiteSpec
from maelab.atomic_output import save_figure

SummaryCell = Callable[[list[Row], str, str, int], str]  # report_cells.summary_cell: (rows, variant, metric, decimals)
FIGURE = "accuracy_by_epoch_{metric}.png"


def epochs_of(rows: list[Row], metric: str) -> list[int]:
    """The epochs at which some run measured ``metric`` (ascending)."""
    found = {split_epoch(r.metric) for r in rows if r.value is not None or r.status == "undefined"}
    return sorted(e for m, e in found if m == metric and e is not None)


def epochs_section(spec: SuiteSpec, rows: list[Row], metrics: dict[str, tuple[str, int]], accuracy: tuple[str, ...],
                   summary_cell: SummaryCell) -> str:
    """One table per accuracy metric measured at the suite's eval_epochs: variants × epochs, mean ± std."""
    parts = []
    for metric in accuracy:
        epochs = epochs_of(rows, metric)
        if not epochs:
            continue
        label, dec = metrics[metric]
        lines = [f"### {label}", "", "| variant | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
                 "| --- |" + " --- |" * len(epochs)]
        lines += [f"| {name} | " + " | ".join(summary_cell(rows, name, at_epoch(metric, e), dec) for e in epochs)
                  + " |" for name in spec.variants]
        parts.append("\n".join(lines))
    if not parts:
        return ""
    head = ("## Accuracy by epoch\n\nEach run evaluated on the checkpoints it kept (the suite's `eval_epochs`; "
            "epoch N = after N epochs of training), mean ± std over seeds; the tables above are the last checkpoint.")
    return "\n\n".join([head, *parts])


def epoch_figures(out: Path, spec: SuiteSpec, rows: list[Row], metrics: dict[str, tuple[str, int]],
                  accuracy: tuple[str, ...], fig_dir: Path) -> dict[str, str]:
    """OUT/figures/accuracy_by_epoch_<metric>.png per accuracy metric with epoch rows; {title: path from OUT}."""
    from maelab.viz.ablation_plots import epoch_curves_figure

    made = {}
    for metric in accuracy:
        epochs = epochs_of(rows, metric)
        curves = {name: {e: values_of(rows, name, at_epoch(metric, e)) for e in epochs} for name in spec.variants}
        curves = {name: c for name, c in curves.items() if any(c.values())}
        if not curves:
            continue
        label = metrics[metric][0]
        fig = epoch_curves_figure(curves, label, f"{spec.name}: {label} by epoch (mean ± std over seeds)",
                                  values_of(rows, FLOOR, metric))
        path = fig_dir / FIGURE.format(metric=metric)
        save_figure(fig, path, "run maelab report on the folder again")
        made[f"{label} versus epoch"] = str(path.relative_to(out))
    return made
