"""A run against its floors in one command (``maelab eval RUN``): the linear probe, k-NN and reconstruction of the
run's checkpoint and of the random-init floor (same architecture, fresh weights), the zero-prediction floor of
reconstruction, one table (:mod:`maelab.eval.table`, the demo's) and one JSON, RUN_DIR/eval/eval.json.

Each protocol runs through its own command (:mod:`maelab.eval.commands`: its feature cache, its per-protocol JSON
written as by ``maelab probe|knn|recon [--random-init]``); eval.json gathers their numbers, each with its floors,
the differences and, for a value that is undefined, null with its reason (:mod:`maelab.undefined`). On data without
labels (an unlabeled image folder) the probe and k-NN are skipped with the reason, and reconstruction still runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from maelab.data import require_labels
from maelab.engine.loading import load_run
from maelab.errors import DataError
from maelab.eval import commands
from maelab.eval.data_tag import data_tag, join_tags
from maelab.eval.table import recon_cells
from maelab.progress import Progress
from maelab.undefined import DASH, is_defined, reason_of, set_undefined

# the numbers eval.json holds, per protocol (recon: also against predicting zeros, where recon.json has that floor)
METRICS = {"probe": ("top1", "top5"), "knn": ("top1",),
           "recon": ("psnr_masked", "psnr_full", "ssim_masked", "ssim_full", "sharpness_ratio")}
LABELLED = {"probe": "probe top-1 %", "knn": "k-NN top-1 %"}  # the table's columns of the protocols needing labels
ZERO = "_zero_pred"
Results = dict[tuple[str, bool], dict[str, Any]]  # (protocol, random_init) -> its result


def evaluate_against_floors(run_dir: str | Path, overrides: list[str], checkpoint: Optional[str] = None,
                            ) -> tuple[dict[str, Any], dict[str, dict[str, Optional[float]]], list[str]]:
    """Evaluate the run's checkpoint (last.pt, or ``checkpoint``) and its floors with ``overrides`` (as the
    per-protocol commands take them). Returns (eval.json's content, the table's rows, its notes); writes nothing
    but the per-protocol results (:func:`write_eval`)."""
    run = load_run(run_dir, checkpoint, overrides=overrides)  # the run, the checkpoint, the overrides: before any work
    try:
        require_labels(run.cfg.data, "each of probe and k-NN")
        skipped = None
    except DataError as err:
        skipped = str(err)
    names = ["recon"] if skipped else ["probe", "knn", "recon"]
    results: Results = {}
    paths: dict[str, str] = {}
    # every=0: a plain line after each evaluation (each takes seconds to minutes: a modest cadence)
    with Progress(2 * len(names), "evaluation", unit="evaluation", every=0.0, enabled=run.cfg.train.progress) as bar:
        for random_init in (False, True):
            for name in names:
                bar.set_postfix(stage=f"{name}, {'random init' if random_init else 'pretrained'}")
                path, results[name, random_init] = getattr(commands, f"run_{name}")(
                    run_dir, overrides, checkpoint, random_init)
                paths[f"{name}_random_init" if random_init else name] = str(path)
                bar.update()
    rows, notes = table_rows(results, skipped)
    notes += below_floor_note(rows["Δ random init"], run.step)
    tag = join_tags(run.tag, data_tag(run.trained_data, run.cfg.data))  # the per-protocol results' (trained) tag
    return {**eval_result(results, paths, skipped), "tag": tag}, rows, notes


def table_rows(results: Results, skipped: Optional[str]) -> tuple[dict[str, dict[str, Optional[float]]], list[str]]:
    """The demo's table (:func:`maelab.eval.table.format_table`) with a row of differences to each floor; one note
    per undefined value, and one line saying why the probe and k-NN were skipped."""
    notes: list[str] = [f"probe and k-NN skipped: {skipped}"] if skipped else [resolution(results["probe", False])]
    rows: dict[str, dict[str, Optional[float]]] = {}
    for label, random_init in (("pretrained", False), ("random init", True)):
        rows[label] = {}
        for name, column in LABELLED.items():
            if not skipped:
                result = results[name, random_init]
                rows[label][column] = result["top1"]
                if result["top1"] is None:
                    notes.append(f"{label}, {column}: {DASH} ({reason_of(result, 'top1')})")
        rows[label].update(recon_cells(results["recon", random_init], "", label, notes))
    rows["zero prediction"] = recon_cells(results["recon", False], ZERO, "zero prediction", notes)
    rows["Δ random init"] = _minus(rows["pretrained"], rows["random init"])
    rows["Δ zero pred"] = _minus(rows["pretrained"], rows["zero prediction"])
    return rows, notes


def below_floor_note(gains: dict[str, Optional[float]], step: int) -> list[str]:
    """One line when the pretrained encoder probes or classifies by k-NN worse than its random-init floor (a
    negative Δ): on a small folder the usual cause is too little pretraining, as MAE's own results and this
    project's own-images recipe found (docs/recipes.md). Empty otherwise."""
    below = [column for column in LABELLED.values() if is_defined(gains.get(column)) and gains[column] < 0]
    if not below:
        return []
    return [f"below the random-init floor on {' and '.join(below)}: this encoder learned less than its random "
            f"weights hold, the usual sign of too little pretraining (this checkpoint: {step:,} optimizer steps; the "
            "own-images recipe trains 2,300, docs/recipes.md): pretrain longer, or check the "
            "run's loss curve (maelab figures RUN)"]


def resolution(probe: dict[str, Any]) -> str:
    """The line under the table that says what one test image weighs: "probe and k-NN on 160 test images: one image
    is 0.62 points of top-1; a difference of a few images is noise (`maelab ablate` with seeds gives intervals)"."""
    n = probe.get("test_images")
    if not n:
        return "probe and k-NN: the number of test images is not recorded"
    return (f"probe and k-NN on {n} test images: one image is {100 / n:.2f} points of top-1; a difference of a few "
            "images is noise (`maelab ablate` with seeds gives intervals)")


def _minus(a: dict[str, Optional[float]], b: dict[str, Optional[float]]) -> dict[str, Optional[float]]:
    return {c: a[c] - b[c] for c in b if is_defined(a.get(c)) and is_defined(b[c])}


def eval_result(results: Results, paths: dict[str, str], skipped: Optional[str]) -> dict[str, Any]:
    """eval.json: ``metrics`` (each number with its floors and the differences), the per-protocol files it was
    read from, the data each protocol used, and the checkpoint's provenance."""
    trained = results["recon", False]
    out: dict[str, Any] = {"metrics": {}, "files": paths, "data": {}}
    for name, keys in METRICS.items():
        if (name, False) not in results:
            out["data"][name] = None
            for key in keys:
                out["metrics"][f"{name}_{key}"] = _skipped_entry(skipped or "")
            continue
        out["data"][name] = results[name, False]["data"]
        for key in keys:
            zero = name == "recon" and f"{key}{ZERO}" in trained
            out["metrics"][f"{name}_{key}"] = metric_entry(results[name, False], results[name, True], key, zero)
    if skipped:
        out["skipped"] = {"probe": skipped, "knn": skipped}
    out.update({k: trained[k] for k in ("checkpoint", "step", "seed", "dataset", "model")})
    return out


def metric_entry(result: dict[str, Any], floor: dict[str, Any], key: str, zero: bool) -> dict[str, Any]:
    """``{"value", "random_init", "minus_random_init"}`` (and ``zero_pred``, ``minus_zero_pred``) of one number;
    an undefined one is null with its reason under ``undefined``."""
    entry: dict[str, Any] = {}
    sources = {"value": (result, key), "random_init": (floor, key)}
    if zero:
        sources["zero_pred"] = (result, key + ZERO)
    for field, (source, name) in sources.items():
        entry[field] = source.get(name)
        if not is_defined(entry[field]):
            set_undefined(entry, field, reason_of(source, name) or f"{name} is not in the result")
    for field in [f for f in sources if f != "value"]:
        diff = f"minus_{field}"
        if is_defined(entry["value"]) and is_defined(entry[field]):
            entry[diff] = entry["value"] - entry[field]
        else:
            set_undefined(entry, diff, f"{'the value' if entry['value'] is None else f'the {field} floor'} is "
                                       "undefined")
    return entry


def _skipped_entry(why: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for field in ("value", "random_init", "minus_random_init"):
        set_undefined(entry, field, why)
    return entry


def write_eval(run_dir: str | Path, result: dict[str, Any]) -> Path:
    """RUN_DIR/eval/eval.json, tagged as the per-protocol results it gathers (eval@epoch_0010.json,
    eval@test1000.json)."""
    return commands.write_result(Path(run_dir), "eval", result, result["tag"])
