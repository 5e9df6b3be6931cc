"""Probe accuracy by depth: what each block of the encoder knows, from ``maelab probe RUN probe.layers=all``.

Reads RUN_DIR/eval/probe.json (and eval/probe_random_init.json, the floor, when it was run with layers=all) and
writes RUN_DIR/figures/probe_by_depth.png (a kept checkpoint's: eval/probe@epoch_0010.json into
figures/epoch_0010/). Imports nothing from eval: the JSON files are the interface.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from maelab.atomic_output import make_folder, save_figure
from maelab.run_layout import RunLayout
from maelab.undefined import fmt, is_defined
from maelab.viz.plots import DPI

FIGURE_NAME = "probe_by_depth.png"
Result = dict[str, Any]  # a probe.json


def probe_depth_figure(trained: Optional[Result], floor: Optional[Result],
                       title: str = "Linear probe by depth") -> Figure:
    """Top-1 (%) per block (x: block 1..depth, its raw output), the final-normed output as a star at the last
    block, and each concatenation (lastK) as a dashed horizontal line; ``floor`` (random init) in gray. Either
    result may be None, not both; each is a probe.json with ``protocols`` from layers=all. The title states the
    heads' protocol, and says so when the two results were probed differently."""
    if trained is None and floor is None:
        raise ValueError("probe_depth_figure needs the trained probe, the random-init floor, or both")
    fig = Figure(figsize=(10.5, 4.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for result, color, label in ((floor, "gray", "random init (floor)"), (trained, "C0", "trained")):  # floor below
        if result is not None:
            _draw(ax, result["protocols"], color, label)
    ax.set_xlabel("block (its raw output, before the final norm)")
    ax.set_ylabel("linear probe top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    texts = {_protocol_text(r) for r in (trained, floor) if r is not None}
    head = "" if len(texts) == 1 else "trained and floor: DIFFERENT protocols; trained: "
    ax.set_title(f"{title}\n{head}{_protocol_text(trained if trained is not None else floor)}", fontsize=10)
    return fig


def _draw(ax: Axes, protocols: dict[str, Result], color: str, label: str) -> None:
    """One result's blocks as a curve, its final-normed layer as a star, its concatenations as horizontal lines; an
    undefined top-1 (null: the features were not finite) is a gap in the curve and "–" in the legend."""
    singles = sorted((p["layers"][0], _top1(p)) for p in protocols.values()
                     if p["norm"] == "raw" and len(p["layers"]) == 1)
    ax.plot([b for b, _ in singles], [t for _, t in singles], "o-", color=color, lw=1.6, ms=5,
            label=f"{label}: each block alone")
    ax.set_xticks([b for b, _ in singles])
    for p in protocols.values():
        if p["norm"] == "final":
            ax.plot(p["layers"], [_top1(p)], "*", color=color, ms=13, mec="black", mew=0.6,
                    label=f"{label}: last block after the final norm ({fmt(p['top1'], '.1f')}%)")
    styles = iter([(0, (5, 2)), (0, (2, 2)), (0, (6, 2, 1, 2)), (0, (1, 1))])
    for p in protocols.values():
        if p["norm"] == "raw" and len(p["layers"]) > 1 and is_defined(p["top1"]):
            blocks = f"blocks {p['layers'][0]}-{p['layers'][-1]}" if p["name"].startswith("last") else p["name"]
            ax.axhline(p["top1"], color=color, lw=1.1, ls=next(styles, "--"), alpha=0.8,
                       label=f"{label}: {p['name']} concatenated ({blocks}): {p['top1']:.1f}%")


def _top1(protocol: Result) -> float:
    """A protocol's top-1 to plot: NaN (nothing drawn) where it is null."""
    return float(protocol["top1"]) if is_defined(protocol.get("top1")) else math.nan


def _protocol_text(result: Result) -> str:
    """The head's training protocol in one line (the same for every point of a result)."""
    p = next(iter(result["protocols"].values()))
    return (f"pool={p['pool']}, {p['optimizer']} lr={p['lr']:g} wd={p['weight_decay']:g}, {p['epochs']} epochs, "
            f"batch {p['batch_size']}, {p['train_images']} train / {p['test_images']} test images")


def _layers_all(path: Path) -> Optional[Result]:
    """The probe.json at ``path`` when it holds a layers=all result, else None."""
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result.get("probe", {}).get("layers") == "all" and "protocols" in result else None


def write_probe_by_depth(run_dir: str | Path, out: Optional[str | Path] = None,
                         tag: Optional[str] = None, floor_tag: Optional[str] = None) -> Optional[Path]:
    """Draw RUN_DIR/figures/probe_by_depth.png (or into ``out``) from the run's layers=all probe results; None
    (nothing written) when neither eval/probe.json nor eval/probe_random_init.json holds one. ``tag``: a kept
    checkpoint's (epoch_0010): its eval/probe@epoch_0010.json, into figures/epoch_0010/. ``floor_tag``: the data
    tag of an evaluation on other data (eval/probe_random_init@test1000.json: the floor on the same images)."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    trained = _layers_all(layout.eval_result("probe", tag=tag))
    floor = _layers_all(layout.eval_result("probe", random_init=True, tag=floor_tag))
    if trained is None and floor is None:
        return None
    path = Path(out or layout.figures_of(tag)) / FIGURE_NAME
    again = "run maelab probe RUN_DIR probe.layers=all or maelab figures RUN_DIR again"
    make_folder(path.parent, "figures folder", again)
    return save_figure(probe_depth_figure(trained, floor, f"Linear probe by depth: {run_dir.name}"), path, again,
                       dpi=DPI)
