"""The training path end to end through the CLI, as bench/gpu_check.sh's train stage runs it: ``maelab pretrain
KEY=VALUE ... optim.epochs=EPOCHS+1 train.stop_after_epochs=EPOCHS``, then ``maelab pretrain --resume RUN_DIR`` (the
run's last epoch).

Usage: python bench/train_smoke.py --run-dir DIR --json OUT.json [--metrics-copy OUT.jsonl] [--epochs 2]
                                   [--limits 150 60] [--grace 15] KEY=VALUE ...

Each invocation has its own time limit: past it, SIGTERM (maelab stops after the step it is in and saves a
checkpoint), then SIGKILL ``--grace`` seconds later. The resume runs whenever a checkpoint exists, so a slow first
invocation still tests it. The JSON is rewritten atomically before and after each invocation, and on SIGTERM (the
stage's own limit), so a kill leaves what was seen so far. It holds:
  complete         true once both invocations have run and been read
  ok               complete, both exited 0 within their limits, and the resume continued where it should
  config           the run's data set, model, batch and compile settings (its config.yaml)
  invocations      per invocation: argv, limit_s, wall_s, exit_code, timed_out (null while it runs)
  steps_per_epoch  from the first epoch record
  epochs           per epoch record: img_per_s and seconds, mask_ratio (the epoch's mean), loss, the img/s of each
                   logging window, and their median after the first window (the first holds any compile)
  mask_ratios      every distinct ratio the step records logged
  resume           checkpoint_step (last.pt's step after the first invocation), first_step_after (the first step the
                   resume logged) and expected_first_step_after, epochs_after, continued (bool) and why_not
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jsonio import write_json  # noqa: E402

from maelab.run_layout import RunLayout  # noqa: E402

CONFIG_KEYS = (("data", "name"), ("model", "preset"), ("optim", "batch_size"), ("train", "log_every"),
               ("train", "compile"), ("train", "compile_scope"), ("train", "compile_backend"),
               ("train", "compile_mode"), ("mask", "schedule"), ("aug", "preset"))


class Terminated(Exception):
    """This script received SIGTERM: the stage's time limit (bench/gpu_check.sh's ``timeout``)."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` once (later ones are ignored while the children stop)."""
    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stop(proc: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM (maelab saves a checkpoint after its current step), SIGKILL ``grace_s`` later; the exit code."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def invoke(argv: list[str], limit_s: float, grace_s: float, record: dict[str, Any]) -> None:
    """Run ``argv`` under ``limit_s``; fill ``record`` with its wall seconds, exit code and whether it timed out."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv)
    try:
        record["exit_code"], record["timed_out"] = proc.wait(timeout=limit_s), False
    except subprocess.TimeoutExpired:
        record["exit_code"], record["timed_out"] = stop(proc, grace_s), True
    except Terminated:
        record["exit_code"], record["timed_out"] = stop(proc, grace_s), True
        raise
    finally:
        record["wall_s"] = round(time.perf_counter() - start, 1)


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl records (a line cut short by a kill is left out)."""
    path = RunLayout(run_dir).metrics
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return records


def checkpoint_step(run_dir: Path) -> Optional[int]:
    """The step of the run's last.pt, or None when there is none (or it cannot be read)."""
    from maelab.engine.checkpoint import load_checkpoint
    from maelab.errors import UserError

    try:
        return int(load_checkpoint(RunLayout(run_dir).checkpoint, needs=("step",))["step"])
    except UserError:
        return None


def run_config(run_dir: Path) -> dict[str, Any]:
    """The settings of CONFIG_KEYS from the run's config.yaml ({} before it exists, or without PyYAML)."""
    try:
        import yaml
    except ImportError:
        return {}
    path = RunLayout(run_dir).config
    cfg = yaml.safe_load(path.read_text()) if path.exists() else {}
    return {f"{a}.{b}": (cfg.get(a) or {}).get(b) for a, b in CONFIG_KEYS} if cfg else {}


def epoch_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per epoch record: its img/s, seconds, mask ratio and loss, and the img/s of its logging windows."""
    rows = []
    for rec in (r for r in records if r.get("kind") == "epoch"):
        windows = [r["img_per_s"] for r in records if r.get("kind") == "step" and r.get("epoch") == rec["epoch"]]
        rows.append({key: rec.get(key) for key in ("epoch", "step", "img_per_s", "seconds", "mask_ratio", "loss")}
                    | {"windows_img_per_s": windows,
                       "median_later_windows_img_per_s": statistics.median(windows[1:]) if len(windows) > 1 else None})
    return rows


def resume_check(records: list[dict[str, Any]], ckpt_step: int, log_every: Optional[int],
                 epochs_total: int) -> dict[str, Any]:
    """Whether the resume continued at the checkpoint's step: its first step record is the next logging step after
    it, and the epoch records run 0, 1, ... to the last epoch, each ending at (epoch + 1) x steps per epoch."""
    epochs = [r for r in records if r.get("kind") == "epoch"]
    after = [r["step"] for r in records if r.get("kind") == "step" and r["step"] > ckpt_step]
    spe = epochs[0]["step"] // (epochs[0]["epoch"] + 1) if epochs else None
    expected = (ckpt_step // log_every + 1) * log_every if log_every else None
    if expected is not None and spe is not None and expected > spe * epochs_total:
        expected = None  # the resume has no logging step left to reach
    problems = []
    if expected is not None and (after[:1] or [None])[0] != expected:
        problems.append(f"its first step record is {after[:1] or 'missing'}, not step {expected}")
    if [r["epoch"] for r in epochs] != list(range(epochs_total)):
        problems.append(f"the epoch records are {[r['epoch'] for r in epochs]}, not 0 to {epochs_total - 1}")
    if spe is None or any(r["step"] != (r["epoch"] + 1) * spe for r in epochs):
        problems.append("an epoch record's step is not (epoch + 1) x the steps per epoch")
    return {"checkpoint_step": ckpt_step, "first_step_after": after[0] if after else None,
            "expected_first_step_after": expected,
            "epochs_after": [r["epoch"] for r in epochs if r["step"] > ckpt_step],
            "continued": not problems, "why_not": "; ".join(problems) or None}


def summarise(result: dict[str, Any], run_dir: Path, epochs_total: int) -> None:
    """Fill ``result`` from the run directory as it is now."""
    records = read_records(run_dir)
    result["config"] = run_config(run_dir)
    epochs = epoch_rows(records)
    result["steps_per_epoch"] = epochs[0]["step"] // (epochs[0]["epoch"] + 1) if epochs else None
    result["epochs"] = epochs
    result["mask_ratios"] = sorted({round(r["mask_ratio"], 6) for r in records
                                    if r.get("kind") == "step" and r.get("mask_ratio") is not None})
    if result.get("checkpoint_step") is not None and len(result["invocations"]) > 1:
        result["resume"] = resume_check(records, result["checkpoint_step"], result["config"].get("train.log_every"),
                                        epochs_total)
    result["ok"] = bool(result["complete"] and result.get("resume", {}).get("continued")
                        and all(r["exit_code"] == 0 and not r["timed_out"] for r in result["invocations"]))


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="the run directory to create (it must not hold a run)")
    parser.add_argument("--json", required=True)
    parser.add_argument("--metrics-copy", help="copy the run's metrics.jsonl here after each invocation")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the first invocation; the resume trains one "
                        "more, the run's last")
    parser.add_argument("--limits", type=float, nargs=2, default=[150.0, 60.0], metavar=("FIRST_S", "RESUME_S"))
    parser.add_argument("--grace", type=float, default=15.0, help="seconds from SIGTERM to SIGKILL")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="maelab pretrain's overrides")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    cli = [sys.executable, "-m", "maelab", "pretrain"]
    # one run of epochs + 1 epochs, stopped after the first ``epochs`` and resumed as it is: its schedules (lr, mask
    # ratio) are the uninterrupted run's, so the resume tests a true continuation
    calls = [[*cli, *args.overrides, f"optim.epochs={args.epochs + 1}", f"train.stop_after_epochs={args.epochs}",
              f"out_dir={run_dir}"],
             [*cli, "--resume", str(run_dir)]]
    result: dict[str, Any] = {"complete": False, "overrides": args.overrides, "invocations": []}

    def save() -> None:
        summarise(result, run_dir, args.epochs + 1)
        write_json(args.json, result)
        if args.metrics_copy and RunLayout(run_dir).metrics.exists():
            shutil.copyfile(RunLayout(run_dir).metrics, args.metrics_copy)

    with sigterm_raises():
        try:
            for argv, limit in zip(calls, args.limits, strict=True):
                if result["invocations"]:  # the resume: from the first invocation's checkpoint, if it left one
                    result["checkpoint_step"] = checkpoint_step(run_dir)
                    if result["checkpoint_step"] is None:
                        result["resume"] = {"continued": False, "why_not": "the first invocation left no checkpoint"}
                        break
                record = {"argv": argv[1:], "limit_s": limit, "wall_s": None, "exit_code": None, "timed_out": None}
                result["invocations"].append(record)
                save()  # a kill now leaves the record of what was running
                invoke(argv, limit, args.grace, record)
                save()
            else:
                result["complete"] = True
        except Terminated:
            result["terminated"] = "SIGTERM: the stage's time limit"
        save()
    print(f"train smoke: {'ok' if result['ok'] else 'FAILED'}; epochs "
          + ", ".join(f"{e['epoch']}: {e['img_per_s'] or 0:,.0f} img/s" for e in result["epochs"])
          + f"; resume: {result.get('resume', {}).get('continued')}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
