"""The ablation's results: where each run lives, its status, and results.csv (one row per variant × seed × metric)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from maelab.atomic import write_text_atomic
from maelab.engine.metrics import read_metrics

RESULTS_NAME = "results.csv"
STATUS_NAME = "ablate.json"
FIELDS = ("variant", "seed", "metric", "value", "status", "error", "run_dir")
FLOOR, ZERO_PRED, SCRATCH = "random_init", "zero_prediction", "scratch"

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
    status: str = "done"
    error: str = ""
    run_dir: str = ""


def run_dir_of(out: Path, variant: str, seed: int) -> Path:
    """Where one variant × seed run lives: OUT/runs/<variant>/seed<k>."""
    return Path(out) / "runs" / variant / f"seed{seed}"


def read_status(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / STATUS_NAME
    return json.loads(path.read_text()) if path.is_file() else {}


def write_status(run_dir: Path, status: dict[str, Any]) -> None:
    """RUN_DIR/ablate.json, written atomically."""
    write_text_atomic(Path(run_dir) / STATUS_NAME, json.dumps(status, indent=2))


def eval_rows(variant: str, seed: int, run_dir: Path, suffix: str = "") -> list[Row]:
    """The metrics of every evaluation JSON a run holds (``suffix="_random_init"`` for the floor's)."""
    rows = []
    for name, keys in EVAL_METRICS.items():
        path = run_dir / "eval" / f"{name}{suffix}.json"
        if path.is_file():
            result = json.loads(path.read_text())
            rows += [Row(variant, seed, metric, float(result[key]), run_dir=str(run_dir))
                     for key, metric in keys.items() if key in result]
    return rows


def zero_pred_rows(seed: int, run_dir: Path) -> list[Row]:
    """The reconstruction metrics of predicting zeros (a floor that does not depend on the weights)."""
    path = run_dir / "eval" / "recon.json"
    if not path.is_file():
        return []
    result = json.loads(path.read_text())
    return [Row(ZERO_PRED, seed, metric, float(result[f"{key}_zero_pred"]), run_dir=str(run_dir))
            for key, metric in EVAL_METRICS["recon"].items() if f"{key}_zero_pred" in result]


def training_rows(variant: str, seed: int, run_dir: Path) -> list[Row]:
    """From metrics.jsonl: the last epoch's loss, the pretraining seconds, the mean mask ratio the encoder saw."""
    if not (run_dir / "metrics.jsonl").is_file():
        return []
    epochs = [r for r in read_metrics(run_dir) if r.get("kind") == "epoch"]
    if not epochs:
        return []
    values = {"final_loss": epochs[-1]["loss"], "pretrain_seconds": sum(r.get("seconds", 0.0) for r in epochs),
              "mask_ratio_seen": sum(r["mask_ratio"] for r in epochs) / len(epochs)}
    return [Row(variant, seed, k, float(v), run_dir=str(run_dir)) for k, v in values.items()]


def failed_row(variant: str, seed: int, run_dir: Path, error: str) -> Row:
    return Row(variant, seed, "error", None, status="failed", error=error, run_dir=str(run_dir))


def write_results(path: Path, rows: list[Row]) -> None:
    """results.csv, written atomically (a reader never sees half a table)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow({"variant": r.variant, "seed": r.seed, "metric": r.metric,
                         "value": "" if r.value is None else repr(r.value), "status": r.status,
                         "error": r.error, "run_dir": r.run_dir})
    write_text_atomic(path, buffer.getvalue())


def read_results(path: Path) -> list[Row]:
    with Path(path).open(newline="") as f:
        return [Row(r["variant"], int(r["seed"]), r["metric"], float(r["value"]) if r["value"] else None,
                    r["status"], r["error"], r["run_dir"]) for r in csv.DictReader(f)]


def values_of(rows: list[Row], variant: str, metric: str) -> list[float]:
    """One variant's values of one metric, ordered by seed (finished runs only)."""
    return [r.value for r in sorted(rows, key=lambda r: r.seed)
            if r.variant == variant and r.metric == metric and r.value is not None]


PROTOCOLS_NAME = "probe_protocols.json"


def probe_protocol_text(result: dict[str, Any]) -> str:
    """The protocol behind a probe.json's top-level top-1, in one line (older files: from their probe section)."""
    p = result.get("protocols", {}).get(result.get("protocol", ""))
    if p is None:  # a probe.json from before probe.layers: the final-normed output, SGD
        probe = result.get("probe", {})
        p = {"name": "last", "layers": ["final"], "norm": "final", "optimizer": "sgd", **probe}
    text = (f"`{p['name']}` (blocks {','.join(map(str, p['layers']))}, {p['norm']} features, pool {p['pool']}; "
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
        path = Path(out) / r.run_dir / "eval" / ("probe_random_init.json" if r.variant == FLOOR else "probe.json")
        if path.is_file():
            variants = found.setdefault(probe_protocol_text(json.loads(path.read_text())), {}).setdefault(
                "variants", [])
            variants += [] if r.variant in variants else [r.variant]
    write_text_atomic(Path(out) / PROTOCOLS_NAME, json.dumps(found, indent=2))
