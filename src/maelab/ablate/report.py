"""report.md from results.csv: mean ± std per variant, differences to the baseline with 95% intervals, the
random-init floor, a verdict per claim (the report's, in the repo's suites), the figures, and what produced it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from maelab.ablate.environment import read_invocations
from maelab.ablate.report_cells import p_value, summary_cell
from maelab.ablate.report_claims import answer_section, claims_section, tested_interval
from maelab.ablate.report_epochs import epoch_figures, epochs_section
from maelab.ablate.report_resolution import TestImages, recorded_test_images, shown_split
from maelab.ablate.report_sections import failures_section, provenance_section, took_effect_section
from maelab.ablate.results import (
    FLOOR,
    PROTOCOLS_NAME,
    RESULTS_NAME,
    SCRATCH,
    UNDEFINED,
    ZERO_PRED,
    Row,
    by_seed,
    read_results,
    seed_of,
    split_epoch,
    undefined_of,
    values_of,
)
from maelab.ablate.reuse import reuse_line
from maelab.ablate.runner import saved_suite
from maelab.ablate.seed_plan import plan_line, read_plan
from maelab.ablate.stats import compare
from maelab.ablate.suite import SuiteSpec
from maelab.atomic import write_text_atomic
from maelab.atomic_output import save_figure
from maelab.engine.metrics import read_metrics
from maelab.errors import UserError
from maelab.run_layout import RunLayout
from maelab.undefined import DASH

REPORT_NAME = "report.md"
# metric -> (label, decimals); the order of the tables
METRICS: dict[str, tuple[str, int]] = {
    "probe_top1": ("linear probe top-1 %", 2), "probe_best_top1": ("best-layer probe top-1 %", 2),
    "knn_top1": ("k-NN top-1 %", 2),
    "finetune_top1": ("fine-tune top-1 %", 2), "scratch_top1": ("from scratch top-1 %", 2),
    "psnr_masked": ("PSNR masked dB", 2), "ssim_full": ("SSIM full", 3), "sharpness": ("sharpness ratio", 3),
    "final_loss": ("final train loss", 4), "mask_ratio_seen": ("mask ratio seen", 3),
}
HEADLINE = ("probe_top1", "probe_best_top1", "knn_top1", "finetune_top1", "psnr_masked", "ssim_full", "sharpness")
# the floor a metric is read against: the random-init encoder's, except fine-tuning's, which is the baseline's ViT
# trained from scratch with the same budget where the suite ran it (metric -> the from-scratch run's metric)
SCRATCH_FLOOR = {"finetune_top1": "scratch_top1"}
SCRATCH_LABEL = "ViT from scratch (the baseline's model)"
ACCURACY = ("probe_top1", "probe_best_top1", "knn_top1")


def floor_of(rows: list[Row], metric: str) -> tuple[str, str]:
    """(variant, metric) of the rows ``metric`` is read against: the from-scratch run's accuracy for fine-tuning
    where the suite ran scratch (even if undefined), else the random-init floor's same metric."""
    if metric in SCRATCH_FLOOR and any(r.variant == SCRATCH for r in rows):
        return SCRATCH, SCRATCH_FLOOR[metric]
    return FLOOR, metric


def reportable_suite(out: str | Path) -> SuiteSpec:
    """The suite of the ablation folder ``out``; UserError when it is not one or has no results.csv yet."""
    spec = saved_suite(Path(out))
    if not (Path(out) / RESULTS_NAME).is_file():
        raise UserError(f"{out} has no {RESULTS_NAME}: run `maelab ablate SUITE --out {out}` first")
    return spec


def build_report(out: str | Path, figures: bool = True) -> Path:
    """Rebuild OUT/report.md (and OUT/figures/) from OUT/results.csv without rerunning anything."""
    out = Path(out)
    spec = reportable_suite(out)
    rows = read_results(out / RESULTS_NAME)
    made = write_report_figures(out, spec, rows) if figures else {}
    protocols = json.loads((out / PROTOCOLS_NAME).read_text()) if (out / PROTOCOLS_NAME).is_file() else {}
    return write_text_atomic(out / REPORT_NAME, render(spec, rows, read_invocations(out), made, protocols,
                                                       read_plan(out), reuse_line(out),
                                                       recorded_test_images(out, rows)))


def render(spec: SuiteSpec, rows: list[Row], invocations: list[dict[str, Any]], figures: dict[str, str],
           probe_protocols: Optional[dict[str, Any]] = None, seed_plan: Optional[dict[str, Any]] = None,
           reused: str = "", test_images: Optional[TestImages] = None) -> str:
    """The whole report as markdown (``probe_protocols``: OUT/probe_protocols.json, what the probe columns are;
    ``seed_plan``: OUT/seed_plan.json when the seeds were chosen by ``--seeds auto``; ``reused``: the sentence
    naming the runs whose pretraining came from another folder; ``test_images``: each accuracy's test images, for
    its resolution)."""
    parts = [_header(spec, rows), answer_section(spec, rows, METRICS), plan_line(seed_plan), reused,
             _probe_line(probe_protocols or {}), _headline(spec, rows), _undefined(spec, rows),
             _differences(spec, rows), claims_section(spec, rows, METRICS, summary_cell, test_images),
             epochs_section(spec, rows, METRICS, ACCURACY, summary_cell), took_effect_section(spec, rows),
             _figures(figures), failures_section(rows), provenance_section(invocations)]
    return "\n\n".join(p for p in parts if p) + "\n"


def variants_in(spec: SuiteSpec, rows: list[Row]) -> list[str]:
    """The suite's variants, then scratch if it ran."""
    return list(spec.variants) + ([SCRATCH] if any(r.variant == SCRATCH for r in rows) else [])


def metrics_in(rows: list[Row], wanted: tuple[str, ...] | list[str]) -> list[str]:
    """The wanted metrics that some run measured (a value, or an undefined one)."""
    present = {r.metric for r in rows if r.value is not None or r.status == UNDEFINED}
    return [m for m in wanted if m in present]


def _header(spec: SuiteSpec, rows: list[Row]) -> str:
    seeds = sorted({r.seed for r in rows})
    described = [spec.description.strip(), ""] if spec.description.strip() else []
    lines = [f"# Ablation: {spec.name}", "", *described,
             f"Seeds: {', '.join(map(str, seeds)) or 'none finished yet'}. Mean ± sample std over seeds; "
             "differences are paired 95% intervals (Welch's where seeds do not pair). Every run's files are "
             "under `runs/<variant>/seed<k>/`.", "",
             "| variant | config | overrides | runs finished | failed |", "| --- | --- | --- | --- | --- |"]
    for name, v in spec.variants.items():
        done = len({r.seed for r in rows if r.variant == name and r.status == "done"})
        failed = len({r.seed for r in rows if r.variant == name and r.status == "failed"})
        overrides = " ".join(f"`{o}`" for o in v.overrides) or "–"
        lines.append(f"| {name} | {v.config or spec.base} | {overrides} | {done} | {failed} |")
    lines += ["", f"Common overrides: {' '.join(f'`{o}`' for o in spec.overrides) or 'none'}; "
                  f"evaluation overrides: {' '.join(f'`{o}`' for o in spec.eval_overrides) or 'none'}."]
    return "\n".join(lines)


def _probe_line(protocols: dict[str, Any]) -> str:
    """Which linear-probe protocol the "linear probe top-1 %" columns are (the runs' eval/probe*.json)."""
    if not protocols:
        return ""
    if len(protocols) == 1:
        return (f"Linear probe columns: {next(iter(protocols))} (docs/evaluation.md); where the runs probed every "
                "block (probe.layers=all), the best-layer column is the highest top-1 over the blocks and their "
                "concatenations, selected on the test set (optimistic, read it beside the final layer's).")
    uses = "; ".join(f"{text} for {', '.join(p['variants'])}" for text, p in protocols.items())
    return f"Linear probe columns: the runs were probed with DIFFERENT protocols, not comparable: {uses}."


def _headline(spec: SuiteSpec, rows: list[Row]) -> str:
    metrics = metrics_in(rows, HEADLINE)
    if "finetune_top1" not in metrics:  # scratch ran without fine-tuning: its accuracy gets a column of its own
        metrics += metrics_in(rows, ["scratch_top1"])
    if not metrics:
        return "## Results\n\nNo run has finished yet."
    lines = ["## Results (mean ± std over seeds)", "",
             "| variant | " + " | ".join(METRICS[m][0] for m in metrics) + " |",
             "| --- |" + " --- |" * len(metrics)]
    names = [*variants_in(spec, rows), FLOOR, ZERO_PRED]
    named = "" if spec.baseline == "baseline" else " (baseline)"
    labels = {FLOOR: "random-init encoder (floor)", ZERO_PRED: "predicting zeros (floor)",
              SCRATCH: f"{SCRATCH_LABEL}, fine-tune floor", spec.baseline: f"**{spec.baseline}**{named}"}
    for name in names:
        own = [SCRATCH_FLOOR.get(m, m) if name == SCRATCH else m for m in metrics]  # scratch's own accuracy
        if any(values_of(rows, name, m) or undefined_of(rows, name, m) for m in own):
            cells = [summary_cell(rows, name, m, METRICS[m][1]) for m in own]
            lines.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _undefined(spec: SuiteSpec, rows: list[Row]) -> str:
    """Each undefined value of a metric the report shows, with its reason: "–" in the tables, left out of every
    mean and interval (one not shown, e.g. top-5 on 4 classes, is only in results.csv)."""
    shown = {*HEADLINE, "scratch_top1", *(c.metric for c in spec.claims)}
    undefined = [r for r in rows if r.status == UNDEFINED and split_epoch(r.metric)[0] in shown]
    if not undefined:
        return ""
    lines = ["## Undefined values", "",
             "These values are undefined (shown as – or counted as undefined in the tables) and are left out of "
             "every mean, standard deviation and interval:", ""]
    groups: dict[tuple[str, str], dict[str, list[int]]] = {}  # one line per metric and reason (top-5 of 4 classes)
    for r in undefined:
        groups.setdefault((r.metric, r.reason), {}).setdefault(r.variant, []).append(r.seed)
    for (metric, reason), seeds in groups.items():
        runs = ", ".join(f"{variant} seed{'s' if len(s) > 1 else ''} {', '.join(map(str, sorted(s)))}"
                         for variant, s in seeds.items())
        lines.append(f"- {METRICS.get(metric, (metric,))[0]}, {runs}: {reason}")
    return "\n".join(lines)


def _differences(spec: SuiteSpec, rows: list[Row]) -> str:
    floors = ("the random-init encoder, or for fine-tuning the baseline's ViT trained from scratch with the same "
              "budget" if any(r.variant == SCRATCH for r in rows) else "the random-init encoder")
    lines = ["## Differences to the baseline and to the floor", "",
             f"Δ = variant − {spec.baseline} (or − the floor of the same seed: {floors}), with its 95% interval "
             "and two-sided p-value: paired over the seeds both sides ran (2 or more), Welch's otherwise "
             f"({'the claims section' if spec.claims else 'docs/ablation.md, *Statistics and verdicts*,'} says "
             "why). An interval that excludes 0 is a difference these seeds can show."]
    for metric in metrics_in(rows, HEADLINE):
        label, dec = METRICS[metric]
        floor_variant, floor_metric = floor_of(rows, metric)
        scratch = floor_variant == SCRATCH
        base, floor = by_seed(rows, spec.baseline, metric), by_seed(rows, floor_variant, floor_metric)
        lines += ["", f"### {label}", "", f"| variant | mean ± std | Δ vs {spec.baseline} [95% CI] | p | "
                  f"Δ vs {'from scratch' if scratch else 'floor'} [95% CI] |", "| --- | --- | --- | --- | --- |"]
        for name in spec.variants:
            vals = by_seed(rows, name, metric)
            c = compare(vals, base) if name != spec.baseline else None
            cell, p = (tested_interval(c, dec), p_value(c.used)) if c is not None else (DASH, DASH)
            vs_floor = tested_interval(compare(vals, floor), dec) if floor else DASH
            lines.append(f"| {name} | {summary_cell(rows, name, metric, dec)} | {cell} | {p} | {vs_floor} |")
    return "\n".join(lines)


def _figures(figures: dict[str, str]) -> str:
    if not figures:
        return ""
    return "## Figures\n\n" + "\n\n".join(f"**{title}**\n\n![{title}]({path})" for title, path in figures.items())


def write_report_figures(out: Path, spec: SuiteSpec, rows: list[Row]) -> dict[str, str]:
    """OUT/figures/*.png; returns {title: path relative to OUT} of those drawn."""
    from maelab.viz.ablation_plots import variant_bars_figure, variant_curves_figure
    from maelab.viz.plots import EPOCH_LABEL

    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    names = variants_in(spec, rows)
    accuracy = metrics_in(rows, (*ACCURACY, "finetune_top1"))
    if accuracy:
        label = {m: METRICS[m][0] for m in accuracy}  # the legend in words ("linear probe top-1 %"), as the tables
        values = {label[m]: {n: values_of(rows, n, m) for n in names if values_of(rows, n, m)} for m in accuracy}
        floors = {label[m]: values_of(rows, *floor_of(rows, m)) for m in accuracy}
        scratch = [m for m in accuracy if floor_of(rows, m)[0] == SCRATCH]
        fig = variant_bars_figure(values, floors, "top-1 accuracy (%)",
                                  f"{spec.name}: accuracy per variant\n(mean ± std, dots = seeds)",
                                  {label[m]: SCRATCH_LABEL for m in scratch})
        made["Accuracy per variant" + _fig_no(spec, 6)] = _save(fig, fig_dir / "accuracy.png", out)
    made.update(epoch_figures(out, spec, rows, METRICS, ACCURACY, fig_dir))  # the suite's eval_epochs
    curves = _epoch_curves(out, spec, "mask_ratio")
    if curves:
        fig = variant_curves_figure(curves, EPOCH_LABEL, "mask ratio seen by the encoder",
                                    "Mask-ratio schedules as trained (lowest seed, logged per epoch)", (-0.03, 1.03))
        made["Mask-ratio schedules (logged)"] = _save(fig, fig_dir / "mask_schedules.png", out)
    recon = _reconstructions(out, spec, fig_dir)
    if recon:
        split = shown_split(_first_seed_dir(out, (spec.figure_variants or list(spec.variants))[0]) or out)
        made[f"Reconstructions of the same masked {split} images{_fig_no(spec, 7)}"] = recon
    return made


def _fig_no(spec: SuiteSpec, number: int) -> str:
    """" (report Fig. 6)" where the suite re-measures the report's claims, else ""."""
    return f" (report Fig. {number})" if spec.report_claims else ""


def _epoch_curves(out: Path, spec: SuiteSpec, key: str) -> dict[str, tuple[list[float], list[float]]]:
    curves = {}
    for name in spec.variants:
        run_dir = _first_seed_dir(out, name)
        if run_dir is None or not RunLayout(run_dir).metrics.is_file():
            continue
        records = [r for r in read_metrics(run_dir) if r.get("kind") == "epoch" and key in r]
        if records:
            curves[name] = ([r["epoch"] + 1 for r in records], [r[key] for r in records])
    return curves


def _reconstructions(out: Path, spec: SuiteSpec, fig_dir: Path) -> Optional[str]:
    from maelab.viz.compare import write_compare_runs

    names = spec.figure_variants or list(spec.variants)
    dirs = [(n, _first_seed_dir(out, n)) for n in names]
    dirs = [(n, d) for n, d in dirs if d is not None and RunLayout(d).checkpoints.is_dir()]
    if not dirs:  # a folder kept without checkpoints (docs/results/<suite>/): the figure drawn when they were there
        kept = fig_dir / "reconstructions.png"
        return str(kept.relative_to(out)) if kept.is_file() else None
    try:
        path = write_compare_runs([d for _, d in dirs], [n for n, _ in dirs], fig_dir / "reconstructions.png",
                                  n_images=10)
    except UserError as err:  # e.g. variants with other patch sizes cannot share masks
        print(f"maelab: reconstruction figure skipped: {err}")
        return None
    return str(path.relative_to(out))


def _first_seed_dir(out: Path, variant: str) -> Optional[Path]:
    """The variant's run with the lowest seed (runs/<variant>/seed<k>), if any."""
    found = [d for d in (out / "runs" / variant).glob("seed*") if seed_of(d) is not None]
    return min(found, key=seed_of) if found else None


def _save(fig: Any, path: Path, out: Path) -> str:
    """Write a report figure atomically (a full disk is one line and leaves the previous figure whole)."""
    save_figure(fig, path, "run maelab report on the folder again")
    return str(path.relative_to(out))
