"""What the GAN loss costs: images/s of the train step with and without it, same process, alternating runs.

Usage: python bench/gan_overhead.py [--device cpu|cuda] [--preset keras] [--batch 256] [--steps 5] [--rounds 4]
                                    [--threads 1] [--set gan.width=16 gan.depth=3 ...]
Builds two runs of the same preset on synthetic images (one plain, one with gan.enabled=true plus the
--set overrides), then alternates: ``steps`` timed train steps of the plain run, ``steps`` of the GAN
run, ``rounds`` times, so that both see the same machine load. Prints each round and the medians; the
GAN step's cost is reported as the ratio of the plain run's images/s to the GAN run's.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from maelab.config import load_config
from maelab.engine.run import Run, build_run
from maelab.engine.step import step_generators, train_step


def make_run(preset: str, device: str, batch: int, overrides: list[str], tmp: Path) -> Run:
    cfg = load_config(None, [
        f"model.preset={preset}", f"train.device={device}", f"optim.batch_size={batch}", "data.name=synthetic",
        f"data.synthetic_train={max(batch * 2, 512)}", "data.synthetic_test=64", "aug.preset=none",
        "optim.lr=1e-4", *overrides,
    ])
    return build_run(cfg, tmp)


def timed(run: Run, steps: int, start: int, logs: dict) -> float:
    """Images per second over ``steps`` train steps (synchronised at both ends)."""
    x = run.data.x_train[: run.cfg.optim.batch_size]
    sync = torch.cuda.synchronize if run.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        loss = train_step(run, x, 1e-4, 0.75, step_generators(0, start + i, run.device), logs)
    float(loss.item())
    sync()
    return steps * len(x) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="keras")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is steadier on a shared machine)")
    parser.add_argument("--set", nargs="*", default=[], help="GAN overrides, e.g. gan.width=16 gan.depth=3")
    parser.add_argument("--common", nargs="*", default=[],
                        help="overrides of both runs, e.g. model.depth=4 model.norm_pix_loss=true (a recipe's model)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    gan_overrides = ["gan.enabled=true", *args.set]
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        plain = make_run(args.preset, args.device, args.batch, args.common, Path(tmp) / "plain")
        gan = make_run(args.preset, args.device, args.batch, [*args.common, *gan_overrides], Path(tmp) / "gan")
        g = gan.cfg.gan
        d_params = sum(p.numel() for p in gan.addon("gan").disc.parameters())
        print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
              f"threads {torch.get_num_threads()}, device {args.device}, preset {args.preset}, batch {args.batch}, "
              f"precision {gan.precision}")
        print(f"D: width {g.width}, depth {g.depth}, {d_params:,} parameters, loss {g.loss}, adaptive {g.adaptive}, "
              f"r1 {g.r1}, conditional {g.conditional}, spectral_norm {g.spectral_norm}")
        timed(plain, args.warmup, 0, {})
        timed(gan, args.warmup, 0, {})
        rows = []
        for r in range(args.rounds):
            start = args.warmup + r * args.steps
            a = timed(plain, args.steps, start, {})
            b = timed(gan, args.steps, start, {})
            rows.append((a, b))
            print(f"round {r}: plain {a:7.1f} img/s   gan {b:7.1f} img/s   step time x{a / b:.2f}")
    plain_med = statistics.median(a for a, _ in rows)
    gan_med = statistics.median(b for _, b in rows)
    ratio_med = statistics.median(a / b for a, b in rows)
    print(f"median: plain {plain_med:.1f} img/s, gan {gan_med:.1f} img/s, GAN step x{ratio_med:.2f} the plain step")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "preset": args.preset, "batch": args.batch, "gan": gan_overrides,
                       "common": args.common, "plain_img_per_s": plain_med, "gan_img_per_s": gan_med,
                       "ratio": ratio_med,
                       "rounds": rows}, f, indent=2)


if __name__ == "__main__":
    main()
