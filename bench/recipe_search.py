"""Screen CPU pretraining recipes at an equal compute budget (issue 13's recipe search).

Usage: python bench/recipe_search.py --out DIR [--budget-keras-epochs E] [--only NAME ...] [--threads T] [--reverse]

Each candidate is a list of overrides on top of ``configs/cifar10_keras.yaml``. Its epoch count is chosen so
that its training FLOPs (``maelab.models.flops``) equal those of ``E`` epochs of the keras preset at mask ratio
0.75, so that a smaller model sees more epochs, as it would in the same minutes; the wall time and img/s of every
run are recorded too, since FLOPs per second differ between sizes on a CPU. Every candidate is pretrained, then
probed (maelab's default linear probe on the final layer) and k-NN-evaluated; one JSON line per candidate goes to
``DIR/results.jsonl``. A finished candidate is skipped when the command runs again, so the search resumes; several
processes may share DIR (each claims a candidate with ``DIR/NAME.claim``; on 2 cores two 1-thread processes, one
with ``--reverse``, beat one 2-thread process).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Optional

from maelab.config import load_config
from maelab.eval.commands import run_knn, run_probe
from maelab.models.flops import mae_forward_flops, train_flops
from maelab.presets import resolve_spec

BASE = "configs/cifar10_keras.yaml"
P4 = ["model.img_size=32", "model.patch_size=4", "aug.preset=mae"]
D4 = ["model.norm_pix_loss=true", "model.depth=4"]
CANDIDATES: dict[str, list[str]] = {
    "keras_np": ["model.norm_pix_loss=true"],
    "p4_np": [*P4, "model.norm_pix_loss=true"],
    "p4_np_crop35": [*P4, "model.norm_pix_loss=true", "aug.crop_scale_min=0.35"],
    "keras_np_dec4": ["model.norm_pix_loss=true", "model.decoder_depth=4"],  # MAE Table 1a: deeper helps the probe
    "keras_np_lr2e-3": ["model.norm_pix_loss=true", "optim.lr=2e-3"],
    "keras_np_m85": ["model.norm_pix_loss=true", "mask.ratio=0.85"],
    "keras_np_wu5": ["model.norm_pix_loss=true", "optim.warmup_fraction=0.05"],
    "keras_np_d4": ["model.norm_pix_loss=true", "model.depth=4"],
    "keras_np_w192": ["model.norm_pix_loss=true", "model.embed_dim=192", "model.num_heads=3", "model.mlp_dim=384"],
    "keras_np_decw128": ["model.norm_pix_loss=true", "model.decoder_embed_dim=128", "model.decoder_mlp_dim=256"],
    "keras_np_lr1e-2": ["model.norm_pix_loss=true", "optim.lr=1e-2"],
    # depth 4 led the first eleven: the next round varies around it (the deeper-base ratio and batch candidates
    # queued before it were dropped unrun)
    "keras_np_d3": ["model.norm_pix_loss=true", "model.depth=3"],
    "keras_np_d4_m85": [*D4, "mask.ratio=0.85"],
    "keras_np_d4_b128": [*D4, "optim.batch_size=128", "optim.lr=3.5e-3"],
    "keras_np_d4_m60": [*D4, "mask.ratio=0.6"],
    "keras_np_d4_adamw95": [*D4, "optim.weight_decay=0.05", "optim.beta2=0.95"],  # MAE's AdamW settings
}


def train_flops_per_image(overrides: list[str]) -> float:
    cfg = load_config(BASE, overrides)
    spec = resolve_spec(cfg.model)
    return train_flops(mae_forward_flops(spec, cfg.mask.ratio)["total"])


def epochs_for(overrides: list[str], budget_keras_epochs: float) -> int:
    """Epochs of this candidate with the training FLOPs of ``budget_keras_epochs`` of the keras preset."""
    ratio = train_flops_per_image([]) / train_flops_per_image(overrides)
    return max(1, round(budget_keras_epochs * ratio))


def run_candidate(name: str, overrides: list[str], out: Path, budget: float, threads: int) -> dict:
    epochs = epochs_for(overrides, budget)
    run_dir = out / name
    common = [f"train.threads={threads}", "train.progress=false", "train.tensorboard=false"]
    cfg = load_config(BASE, [*overrides, f"optim.epochs={epochs}", f"out_dir={run_dir}", f"name={name}", *common])
    start = time.perf_counter()
    from maelab.engine.pretrain import pretrain
    pretrain(cfg)
    pretrain_s = time.perf_counter() - start
    _, probe = run_probe(run_dir, common)
    _, knn = run_knn(run_dir, common)
    images = epochs * 50_000
    return {"name": name, "overrides": overrides, "epochs": epochs, "budget_keras_epochs": budget,
            "pretrain_s": pretrain_s, "img_per_s": images / pretrain_s, "threads": threads,
            "probe_top1": probe["top1"], "knn_top1": knn["top1"], "finished": time.strftime("%Y-%m-%d %H:%M")}


def claim(path: Path) -> bool:
    """Take the candidate for this process (several search processes may share one --out): False when a live
    process holds it."""
    try:
        holder = int(path.read_text())
        os.kill(holder, 0)
        return holder == os.getpid()
    except (FileNotFoundError, ValueError, ProcessLookupError):
        path.write_text(str(os.getpid()))
        return True


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-keras-epochs", type=float, default=7.0)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reverse", action="store_true", help="take the candidates from the last one")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    names = [n for n in CANDIDATES if not args.only or n in args.only]
    for name in reversed(names) if args.reverse else names:
        done = {json.loads(line)["name"] for line in results.read_text().splitlines()} if results.exists() else set()
        if name in done or not claim(out / f"{name}.claim"):
            continue
        if (out / name).exists():  # an interrupted candidate starts again from nothing
            shutil.rmtree(out / name)
        row = run_candidate(name, CANDIDATES[name], out, args.budget_keras_epochs, args.threads)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
