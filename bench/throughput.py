"""Pretraining throughput (images/s) of maelab's train step, per model preset.

Usage: python bench/throughput.py [--device cpu|cuda] [--preset keras vit_tiny_p4] [--batch 256] [--steps 20]
Runs the real train step (augmentation, masking, forward, backward, AdamW) on synthetic images held on the
device, after warm-up steps, and prints a table; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from maelab.config import load_config
from maelab.engine.pretrain import build_run, step_seed, train_step


def measure(preset: str, device: str, batch: int, steps: int, warmup: int, aug: str) -> float:
    """Images per second over ``steps`` train steps after ``warmup`` steps."""
    cfg = load_config(None, [
        f"model.preset={preset}", f"train.device={device}", f"optim.batch_size={batch}", "data.name=synthetic",
        f"data.synthetic_train={max(batch * 2, 512)}", "data.synthetic_test=64", f"aug.preset={aug}",
        "optim.lr=1e-4",
    ])
    with tempfile.TemporaryDirectory() as tmp:
        from pathlib import Path

        run = build_run(cfg, Path(tmp))
        gen = torch.Generator(device=run.device)
        x = run.data.x_train[:batch]

        def step(i: int) -> torch.Tensor:
            gen.manual_seed(step_seed(0, i))
            return train_step(run, x, 1e-4, 0.75, gen)

        for i in range(warmup):
            step(i)
        sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        for i in range(steps):
            loss = step(warmup + i)
        float(loss.item())
        sync()
        return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", nargs="+", default=["keras", "vit_tiny_p4"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--aug", default="none")
    parser.add_argument("--json", help="write results to this file")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"threads {torch.get_num_threads()}, device {args.device}, batch {args.batch}, aug {args.aug}")
    results = {}
    for preset in args.preset:
        results[preset] = measure(preset, args.device, args.batch, args.steps, args.warmup, args.aug)
        print(f"{preset:>14}: {results[preset]:8.1f} img/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "batch": args.batch, "img_per_s": results}, f, indent=2)


if __name__ == "__main__":
    main()
