"""The ablation's results: where each run lives, its status, and results.csv (one row per variant × seed × metric)."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from maelab.atomic import write_text_atomic
from maelab.engine.metrics import read_metrics
from maelab.run_layout import RunLayout, epoch_tag
from maelab.undefined import is_defined, reason_of

RESULTS_NAME = "results.csv"
STATUS_NAME = "ablate.json"
SUITE_NAME = "suite.yaml"  # the suite as run, in the ablation folder (runner.save_suite)
FIELDS = ("variant", "seed", "metric", "value", "status", "error", "run_dir", "reason")
FLOOR, ZERO_PRED, SCRATCH = "random_init", "zero_prediction", "scratch"
DONE, FAILED, UNDEFINED = "done", "failed", "undefined"  # a row's status; an undefined row's value is empty

BEST_PROBE = "probe_best_top1"  # the best protocol of probe.layers=all (selected on the test set)
# eval/<file>.json key -> results metric
EVAL_METRICS: dict[str, dict[str, str]] = {
    "probe": {"top1": "probe_top1", "top5": "probe_top5"},
    "knn": {"top1": "knn_top1"},
    "recon": {"psnr_masked": "psnr_masked", "psnr_full": "psnr_full", "ssim_masked": "ssim_masked",
              "ssim_full": "ssim_full", "sharpness_ratio": "sharpness"},
    "finetune": {"top1": "finetune_top1", "top5": "finetune_top5"},
    "scratch": {"top1": "scratch_top1", "top5": "scratch_top5"},
}


@dataclass(frozen=True)
class Row:
    variant: str
    seed: int
    metric: str
    value: Optional[float]
    status: str = DONE
    error: str = ""
    run_dir: str = ""
    reason: str = ""  # why the value is undefined (status "undefined")


def run_dir_of(out: Path, variant: str, seed: int) -> Path:
    """Where one variant × seed run lives: OUT/runs/<variant>/seed<k>."""
    return Path(out) / "runs" / variant / f"seed{seed}"


def seed_of(run_dir: Path) -> Optional[int]:
    """The seed k of a run folder named seed<k> (:func:`run_dir_of`), or None for any other name."""
    digits = Path(run_dir).name.removeprefix("seed")
    return int(digits) if Path(run_dir).name.startswith("seed") and digits.isdigit() else None


def read_status(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / STATUS_NAME
    return json.loads(path.read_text()) if path.is_file() else {}


def write_status(run_dir: Path, status: dict[str, Any]) -> None:
    """RUN_DIR/ablate.json, written atomically."""
    write_text_atomic(Path(run_dir) / STATUS_NAME, json.dumps(status, indent=2))


def metric_row(variant: str, seed: int, run_dir: Path, metric: str, value: Any, reason: str) -> Row:
    """One value of a run: a finite number, or an undefined row carrying ``reason`` (null, NaN or inf)."""
    if is_defined(value):
        return Row(variant, seed, metric, float(value), run_dir=str(run_dir))
    if value is not None:  # a file written before results were checked for non-finite numbers
        reason = f"not a finite number ({value})"
    return Row(variant, seed, metric, None, status=UNDEFINED, run_dir=str(run_dir), reason=reason or "null")


def at_epoch(metric: str, epoch: Optional[int]) -> str:
    """The results.csv name of ``metric`` measured on the checkpoint kept after ``epoch`` epochs:
    ``probe_top1@epoch_0010`` (``metric`` itself for None: the run's last checkpoint)."""
    return metric if epoch is None else f"{metric}@{epoch_tag(epoch)}"


def split_epoch(name: str) -> tuple[str, Optional[int]]:
    """The inverse of :func:`at_epoch`: ``probe_top1@epoch_0010`` -> ("probe_top1", 10)."""
    metric, _, tag = name.partition("@epoch_")
    return (metric, int(tag)) if tag.isdigit() else (name, None)


def eval_rows(variant: str, seed: int, run_dir: Path, random_init: bool = False,
              epoch: Optional[int] = None) -> list[Row]:
    """The metrics of every evaluation JSON a run holds (``random_init``: the floor's; ``epoch``: those of the
    checkpoint kept after that many epochs, named by :func:`at_epoch`); a null value becomes an undefined row with
    the reason the JSON gives."""
    rows = []
    tag = None if epoch is None else epoch_tag(epoch)
    for name, keys in EVAL_METRICS.items():
        path = RunLayout(run_dir).eval_result(name, random_init, tag)
        if path.is_file():
            result = json.loads(path.read_text())
            rows += [metric_row(variant, seed, run_dir, at_epoch(metric, epoch), result[key], reason_of(result, key))
                     for key, metric in keys.items() if key in result]
            if name == "probe" and "best" in result:  # probe.layers=all: the best block or concatenation
                rows.append(metric_row(variant, seed, run_dir, at_epoch(BEST_PROBE, epoch), result["best"]["top1"],
                                       ""))
    return rows


def zero_pred_rows(seed: int, run_dir: Path) -> list[Row]:
    """The reconstruction metrics of predicting zeros (a floor that does not depend on the weights)."""
    path = RunLayout(run_dir).eval_result("recon")
    if not path.is_file():
        return []
    result = json.loads(path.read_text())
    return [metric_row(ZERO_PRED, seed, run_dir, metric, result[f"{key}_zero_pred"],
                       reason_of(result, f"{key}_zero_pred"))
            for key, metric in EVAL_METRICS["recon"].items() if f"{key}_zero_pred" in result]


def training_rows(variant: str, seed: int, run_dir: Path) -> list[Row]:
    """From metrics.jsonl: the last epoch's loss, the pretraining seconds, the mean mask ratio the encoder saw.

    The last epoch's loss is undefined when every one of its steps was skipped (train.on_nan=skip)."""
    if not RunLayout(run_dir).metrics.is_file():
        return []
    epochs = [r for r in read_metrics(run_dir) if r.get("kind") == "epoch"]
    if not epochs:
        return []
    last = epochs[-1]
    loss_reason = reason_of(last, "loss") or "the last epoch has no finite loss"
    return [metric_row(variant, seed, run_dir, "final_loss", last.get("loss"), loss_reason),
            Row(variant, seed, "pretrain_seconds", float(sum(r.get("seconds", 0.0) for r in epochs)),
                run_dir=str(run_dir)),
            Row(variant, seed, "mask_ratio_seen", float(sum(r["mask_ratio"] for r in epochs) / len(epochs)),
                run_dir=str(run_dir))]


def failed_row(variant: str, seed: int, run_dir: Path, error: str) -> Row:
    return Row(variant, seed, "error", None, status=FAILED, error=error, run_dir=str(run_dir))


def write_results(path: Path, rows: list[Row]) -> None:
    """results.csv, written atomically (a reader never sees half a table). A value is a finite number or empty
    (failed or undefined, with the reason): a NaN or an infinity raises ValueError before anything is written."""
    bad = [r for r in rows if r.value is not None and not math.isfinite(r.value)]
    if bad:
        raise ValueError(f"{bad[0].variant} seed {bad[0].seed} {bad[0].metric} = {bad[0].value}: an undefined value "
                         "is an empty value with status 'undefined' and its reason")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow({"variant": r.variant, "seed": r.seed, "metric": r.metric,
                         "value": "" if r.value is None else repr(r.value), "status": r.status,
                         "error": r.error, "run_dir": r.run_dir, "reason": r.reason})
    write_text_atomic(path, buffer.getvalue())


def read_results(path: Path) -> list[Row]:
    with Path(path).open(newline="") as f:
        return [Row(r["variant"], int(r["seed"]), r["metric"], float(r["value"]) if r["value"] else None,
                    r["status"], r["error"], r["run_dir"], r.get("reason") or "") for r in csv.DictReader(f)]


def values_of(rows: list[Row], variant: str, metric: str) -> list[float]:
    """One variant's values of one metric, ordered by seed (finished runs only)."""
    return [r.value for r in sorted(rows, key=lambda r: r.seed)
            if r.variant == variant and r.metric == metric and r.value is not None]


def by_seed(rows: list[Row], variant: str, metric: str) -> dict[int, float]:
    """One variant's defined values of one metric, by seed (what a paired comparison matches)."""
    return {r.seed: r.value for r in rows if r.variant == variant and r.metric == metric and r.value is not None}


def undefined_of(rows: list[Row], variant: str, metric: str) -> list[Row]:
    """One variant's undefined rows of one metric (left out of its means), ordered by seed."""
    return [r for r in sorted(rows, key=lambda r: r.seed)
            if r.variant == variant and r.metric == metric and r.status == UNDEFINED]


PROTOCOLS_NAME = "probe_protocols.json"


def probe_protocol_text(result: dict[str, Any]) -> str:
    """The protocol behind a probe.json's top-level top-1, in one line (older files: from their probe section)."""
    p = result.get("protocols", {}).get(result.get("protocol", ""))
    if p is None:  # a probe.json from before probe.layers: the final-normed output, SGD
        probe = result.get("probe", {})
        p = {"name": "last", "layers": ["final"], "norm": "final", "optimizer": "sgd", **probe}
    blocks = ("the last block" if p["layers"] == ["final"] else
              f"block{'s' if len(p['layers']) > 1 else ''} {','.join(map(str, p['layers']))}")
    norm = "final-normed" if p["norm"] == "final" else "before the final norm"
    pool = {"mean": "mean-pooled", "cls": "cls token", "both": "mean-pooled and cls token"}.get(p["pool"], p["pool"])
    text = (f"`{p['name']}` ({blocks}, {norm}, {pool}; "
            f"{p['optimizer']} lr {p['lr']:g}, weight decay {p['weight_decay']:g}, {p['epochs']} epochs, "
            f"batch {p['batch_size']}")
    return text + (", augmented)" if p.get("augment") else ")")


def write_probe_protocols(out: Path, rows: list[Row]) -> None:
    """OUT/probe_protocols.json: for the probe columns of the report (trained and floor), each distinct protocol
    of the runs' eval/probe*.json with the variants that used it; read by the report, so that it needs no run."""
    found: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        if r.metric != "probe_top1" or not r.run_dir:
            continue
        path = RunLayout(Path(out) / r.run_dir).eval_result("probe", random_init=r.variant == FLOOR)
        if path.is_file():
            variants = found.setdefault(probe_protocol_text(json.loads(path.read_text())), {}).setdefault(
                "variants", [])
            variants += [] if r.variant in variants else [r.variant]
    write_text_atomic(Path(out) / PROTOCOLS_NAME, json.dumps(found, indent=2))


def not_an_ablation(path: Path, given: str) -> str:
    """The message for a folder ``given`` (resolved: ``path``) that holds no ablation: it does not exist, or it
    has no suite.yaml; a folder inside an ablation folder (a run folder) names the ablation folder to give, as
    given where it can."""
    candidates = [p for p in Path(given).parents if p != Path(".")] + list(path.resolve().parents)
    inside = next((p for p in candidates if (p / SUITE_NAME).is_file()), None)
    hint = (f"give {inside}, the ablation folder it is in" if inside is not None else
            "give the --out folder of an earlier `maelab ablate`")
    if not path.exists():
        return f"{given} does not exist: {hint}"
    return f"{given} is not an ablation folder (it has no {SUITE_NAME}): {hint}"
