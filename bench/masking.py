"""Cost of per-sample mask ratios (padding + key mask) and of register tokens: forward + backward images/s.

Usage: python bench/masking.py [--device cpu|cuda] [--preset keras] [--batch 256] [--steps 5] [--repeats 3]
Variants run interleaved, ``--repeats`` times each, and the median is printed (the CPU may be shared).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from maelab.config import MaskConfig, ModelConfig
from maelab.engine.device import autocast, resolve_device, resolve_precision
from maelab.masking import effective_ratios
from maelab.models import build_mae, resolve_spec
from maelab.schedules import mask_ratios_at


def variants(batch: int, num_patches: int) -> dict[str, tuple[int, Callable[[int], float | torch.Tensor]]]:
    """name -> (registers, step -> mask ratio given to the model)."""
    per_sample = MaskConfig(schedule="random", min=0.5, max=1.0, per_sample=True)
    return {
        "constant 0.75": (0, lambda s: 0.75),
        "constant 0.5": (0, lambda s: 0.5),
        "per-sample U[0.5, 1] (mean 0.75)": (
            0, lambda s: effective_ratios(num_patches, mask_ratios_at(per_sample, s, 0, batch))),
        "constant 0.75 + 4 registers": (4, lambda s: 0.75),
    }


def measure(preset: str, registers: int, ratio_at: Callable[[int], float | torch.Tensor], device: torch.device,
            batch: int, steps: int) -> float:
    """Images per second of forward + backward over ``steps`` steps, after one warm-up step."""
    torch.manual_seed(0)
    model = build_mae(resolve_spec(ModelConfig(preset=preset, registers=registers))).to(device)
    imgs = torch.randn(batch, 3, model.spec.img_size, model.spec.img_size, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    precision = resolve_precision("auto", device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = 0.0
    for s in range(steps + 1):
        if s == 1:
            sync()
            start = time.perf_counter()
        with autocast(device, precision):
            loss, _, _ = model(imgs, ratio_at(s), generator=gen)
        loss.backward()
    sync()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="keras")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    spec = resolve_spec(ModelConfig(preset=args.preset))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads "
          f"{torch.get_num_threads()}, device {device}, preset {args.preset}, batch {args.batch}")
    table = variants(args.batch, spec.num_patches)
    results: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(args.repeats):
        for name, (registers, ratio_at) in table.items():
            results[name].append(measure(args.preset, registers, ratio_at, device, args.batch, args.steps))
    for name, values in results.items():
        print(f"{name:>34}: {statistics.median(values):8.1f} img/s  (runs: {', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    main()
