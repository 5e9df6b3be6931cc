"""Time to accuracy on one GPU: MAE pretraining then a linear probe, and pretraining then fine-tuning.

Usage: python bench/speedrun.py [--recipe probe finetune] [--device cuda] [--out DIR] [--json out.json]
                                [--set KEY=VALUE ...] [--smoke]

Each recipe runs the real commands in one process: ``pretrain`` into a run directory, then ``probe`` (linear
probe on frozen features) or ``finetune`` on it, and reports the test top-1 and the wall time in all, from the
start of pretraining (data loading, torch.compile and feature extraction included) to the accuracy. The goals
(issue 6): probe >= 60% within 5 minutes, fine-tune >= 93% within 15 minutes, CIFAR-10 on one GPU.
``--minutes M`` (any device) is the budgeted mode: it measures the step rate of ``--config`` (default
configs/cifar10_keras.yaml) on its first steps, pretrains for the whole epochs that fit M minutes (warm-up and
cosine complete within them), then runs each ``--probes`` protocol (maelab's default probe; the reference protocol:
AdamW lr 1e-3, weight decay 1e-4, 100 epochs) on every block and concatenation (``probe.layers=all``: the final
layer's top-1 and the best protocol's are recorded), k-NN, and the same for the random-init floor of the same
architecture; the JSON (``--json``, rewritten after every stage) holds the wall times, epochs, img/s and every
figure. ``--keep-epochs`` skips the calibration and keeps the config's epochs (a recipe already sized for the
budget, such as configs/cifar10_cpu25.yaml, e.g. seeds run side by side with one thread each); the JSON then says
whether the pretraining held the minutes; ``--resume RUN_DIR`` finishes such a run cut short. ``--set`` overrides
are added to every stage of every recipe (e.g. ``--set optim.epochs=50``); ``--set-pretrain`` / ``--set-eval`` to
one stage only. ``--smoke`` runs each recipe in seconds on the CPU (synthetic images, the micro model, one epoch): a
check that the script works, not a measurement.

The probe recipe's 160 epochs are what one H200 ran within 5 minutes (62.90%, 283 s; 80 epochs gave 58.31% in
171 s); the fine-tune recipe is still a first guess made without a GPU. The figures are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from budget import PROBES, run_budgeted  # noqa: E402

from maelab.config import load_config
from maelab.engine.pretrain import pretrain
from maelab.eval.commands import run_finetune, run_probe
from maelab.eval.monitors import epoch_hooks

BUDGET_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cifar10_keras.yaml"
# (pretraining overrides, evaluation overrides, accuracy goal %, time goal s)
RECIPES: dict[str, tuple[list[str], list[str], float, float]] = {
    "probe": (
        ["model.preset=vit_tiny_p4", "model.norm_pix_loss=true", "aug.preset=mae", "optim.epochs=160",
         "optim.batch_size=1024", "optim.base_lr=1.5e-4", "optim.warmup_epochs=10", "train.compile=true",
         "train.save_every=10"],
        ["probe.epochs=50", "probe.batch_size=1024", "probe.lr=0.4"],
        60.0, 300.0,
    ),
    "finetune": (
        ["model.preset=vit_tiny_p4", "model.norm_pix_loss=true", "aug.preset=mae", "optim.epochs=150",
         "optim.batch_size=1024", "optim.base_lr=1.5e-4", "optim.warmup_epochs=10", "train.compile=true",
         "train.save_every=10"],
        ["finetune.epochs=100", "finetune.batch_size=512", "finetune.base_lr=1e-3", "finetune.layer_decay=0.75",
         "finetune.drop_path=0.1", "finetune.label_smoothing=0.1", "finetune.mixup=0.8", "finetune.cutmix=1.0",
         "finetune.aug=mae"],
        93.0, 900.0,
    ),
}
SMOKE = (["data.name=synthetic", "data.synthetic_train=256", "data.synthetic_test=128", "model.preset=micro",
          "optim.epochs=2", "optim.warmup_epochs=1", "optim.batch_size=64", "train.compile=false",
          "train.tensorboard=false"],
         ["probe.epochs=2", "finetune.epochs=1", "finetune.batch_size=64"])


def stage_overrides(recipe: str, device: str, out_dir: Path, extra: list[str],
                    smoke: bool) -> tuple[list[str], list[str]]:
    """The pretraining and evaluation overrides of ``recipe`` (smoke ones after the recipe's, ``extra`` last)."""
    pre, post, _, _ = RECIPES[recipe]
    pre = [*pre, f"train.device={device}", f"out_dir={out_dir}", "train.progress=false", f"name=speedrun-{recipe}"]
    if smoke:
        pre, post = [*pre, *SMOKE[0]], [*post, *SMOKE[1]]
    return [*pre, *extra], list(post)


def run_recipe(recipe: str, device: str, out_dir: Path, pre_extra: list[str], post_extra: list[str],
               smoke: bool = False) -> dict[str, Any]:
    """Pretrain then evaluate; returns the accuracy, the stage times and whether the goal was met."""
    pre, post = stage_overrides(recipe, device, out_dir, pre_extra, smoke)
    post = [*post, *post_extra]
    cfg = load_config(None, pre)
    start = time.perf_counter()
    run_dir = pretrain(cfg, monitors=epoch_hooks)
    pretrained = time.perf_counter()
    evaluate = run_probe if recipe == "probe" else run_finetune
    _, result = evaluate(run_dir, post)
    end = time.perf_counter()
    _, _, goal_top1, goal_s = RECIPES[recipe]
    total = end - start
    return {
        "recipe": recipe, "top1": result["top1"], "protocol": result.get("protocol"), "best": result.get("best"),
        "pretrain_s": pretrained - start, "eval_s": end - pretrained,
        "total_s": total, "goal_top1": goal_top1, "goal_s": goal_s,
        "met": bool(result["top1"] >= goal_top1 and total <= goal_s), "smoke": smoke,
        "pretrain_overrides": pre, "eval_overrides": post, "run_dir": str(run_dir),
    }


def budgeted(args: argparse.Namespace, device: str, gpu: Optional[str]) -> dict[str, Any]:
    """``--minutes``: the config's pretraining fitted to the budget (bench/budget.py), then its evaluations."""
    root = Path(args.out or "runs/speedrun")
    run_dir = Path(args.resume) if args.resume else root / f"budget{args.minutes:g}m-{time.strftime('%Y%m%d-%H%M%S')}"
    smoke = [*SMOKE[0], "optim.warmup_epochs=null"] if args.smoke else []  # the budget sets the epochs
    pre = [*smoke, f"train.device={device}", f"out_dir={run_dir}", "train.progress=false", *args.set,
           *args.set_pretrain]
    cfg = load_config(args.config, pre)
    post = [*args.set, *args.set_eval, *(SMOKE[1] if args.smoke else [])]
    head = {"config": args.config, "pretrain_overrides": pre, "eval_overrides": post, "device": gpu or device,
            "threads": torch.get_num_threads(), "smoke": args.smoke}

    def save(record: dict[str, Any]) -> None:
        if args.json:
            Path(args.json).write_text(json.dumps({**head, **record}, indent=2))

    record = {**head, **run_budgeted(cfg, args.minutes, post, args.probes, save, args.keep_epochs,
                                     Path(args.resume) if args.resume else None)}
    print(json.dumps(record, indent=2))
    return record


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", nargs="+", default=["probe", "finetune"], choices=list(RECIPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="folder for the run directories (default: a temporary folder)")
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every stage, e.g. optim.epochs=40")
    parser.add_argument("--set-pretrain", nargs="*", default=[], help="overrides for pretraining only")
    parser.add_argument("--set-eval", nargs="*", default=[], help="overrides for the probe / fine-tune only")
    parser.add_argument("--smoke", action="store_true", help="seconds on the CPU: synthetic data, micro model")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--minutes", type=float, help="budgeted mode: pretrain --config for as many epochs as fit "
                        "this many minutes on this machine, then probe, k-NN and the random-init floor")
    parser.add_argument("--config", default=str(BUDGET_CONFIG), help="budgeted mode: the pretraining config")
    parser.add_argument("--keep-epochs", action="store_true", help="budgeted mode: no calibration; pretrain the "
                        "config's optim.epochs (a recipe sized for --minutes here) and record whether it held them")
    parser.add_argument("--resume", metavar="RUN_DIR", help="budgeted mode: finish a run of the same command cut "
                        "short (its pretraining from the last checkpoint), then evaluate it")
    parser.add_argument("--probes", nargs="+", default=["default", "reference"], choices=list(PROBES),
                        help="budgeted mode: the probe protocols to report")
    args = parser.parse_args(argv)
    device = "cpu" if args.smoke else args.device
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    print(f"torch {torch.__version__}, device {device} {gpu or platform.processor() or platform.machine()}")
    if args.minutes is not None:
        return [budgeted(args, device, gpu)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        for recipe in args.recipe:
            r = run_recipe(recipe, device, root / recipe, [*args.set, *args.set_pretrain],
                           [*args.set, *args.set_eval], args.smoke)
            r["device"] = gpu or device
            results.append(r)
            best = f" (best protocol {r['best']['name']}: {r['best']['top1']:.2f}%)" if r.get("best") else ""
            print(f"{recipe}: top-1 {r['top1']:.2f}%{best} in {r['total_s']:.0f} s (pretrain {r['pretrain_s']:.0f} s, "
                  f"{recipe} {r['eval_s']:.0f} s); goal {r['goal_top1']:.0f}% within {r['goal_s']:.0f} s: "
                  f"{'met' if r['met'] else 'not met'}", flush=True)
            if args.json:  # after each recipe, so that a run cut short keeps what it finished
                Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
