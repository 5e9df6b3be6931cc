"""Augmentation throughput (images/s): maelab's one-warp seed5 pipeline against kornia's sequential layers.

Usage: python bench/augment.py [--device cpu|cuda] [--batch 256] [--steps 20] [--threads 1] [--json out.json]
Every pipeline takes the same uint8 batch ``[N, 32, 32, 3]`` on the device and returns ``[N, 3, 48, 48]``
float in [0, 1] (the conversion to float is timed in each). kornia is an optional extra
(``pip install -e .[bench]``, or ``pip install kornia --no-deps kornia_rs``); without it only maelab's rows run.

The kornia pipelines follow the Keras layer order of the report's seed5: Resize(52) -> RandomCrop(48) ->
RandomHorizontalFlip -> rotation (+-54 deg) -> zoom (scale 0.8-1.2) -> contrast -> brightness -> translation
(0.1), with reflect padding. ``kornia sequential`` warps once per geometric layer (RandomAffine for rotation,
zoom and translation, so each can reflect); ``kornia one affine`` folds rotation, zoom and translation into
one RandomAffine (still after a resize and a crop). Closest equivalents, not identical maths: kornia's
RandomContrast multiplies without subtracting the mean.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch

from maelab.config import AugConfig
from maelab.data.augment import augment, to_float

IN_SIZE, OUT_SIZE = 32, 48


def maelab_pipeline(preset: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """maelab's ``augment`` with ``aug.preset=preset`` (keras base, report factors), its own generator."""
    cfg = AugConfig(preset=preset, base="keras")
    gen = torch.Generator(device=device).manual_seed(0)
    return lambda imgs: augment(imgs, cfg, OUT_SIZE, gen)


def kornia_pipeline(fused: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """kornia's closest equivalent of seed5, one layer per op (``fused``: one RandomAffine for the geometry)."""
    import kornia.augmentation as K

    def affine(**kwargs: object) -> K.RandomAffine:
        return K.RandomAffine(padding_mode="reflection", align_corners=False, p=1.0, **kwargs)

    base = [K.Resize(round(OUT_SIZE * 52 / 48), align_corners=False), K.RandomCrop((OUT_SIZE, OUT_SIZE)),
            K.RandomHorizontalFlip(p=0.5)]
    colour = [K.RandomContrast(contrast=(0.8, 1.2), p=1.0), K.RandomBrightness(brightness=(0.8, 1.2), p=1.0)]
    if fused:
        layers = base + [affine(degrees=54.0, scale=(0.8, 1.2), translate=(0.1, 0.1))] + colour
    else:
        layers = base + [affine(degrees=54.0), affine(degrees=0.0, scale=(0.8, 1.2))] + colour
        layers.append(affine(degrees=0.0, translate=(0.1, 0.1)))
    seq = K.AugmentationSequential(*layers)
    return lambda imgs: seq(to_float(imgs))


def measure(fn: Callable[[torch.Tensor], torch.Tensor], imgs: torch.Tensor, steps: int,
            warmup: int) -> dict[str, float]:
    """Images per second of ``fn(imgs)`` over ``steps`` timed calls after ``warmup`` calls: median and best call.

    Per-call timing: on a CPU shared with other jobs the median is the fair figure and the best call
    shows what the pipeline does when it has the cores to itself.
    """
    sync = torch.cuda.synchronize if imgs.device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        out = fn(imgs)
    assert out.shape == (imgs.shape[0], 3, OUT_SIZE, OUT_SIZE), out.shape
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        fn(imgs)
        sync()
        times.append(time.perf_counter() - start)
    return {"median": imgs.shape[0] / statistics.median(times), "best": imgs.shape[0] / min(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); on a CPU shared "
                        "with other jobs use 1, as multi-threaded ops wait for descheduled threads")
    parser.add_argument("--json", help="write results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)  # kornia draws from the global generator
    imgs = torch.randint(0, 256, (args.batch, IN_SIZE, IN_SIZE, 3), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0)).to(device)
    pipelines: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "maelab seed5 (one warp)": maelab_pipeline("seed5", device),
        "maelab keras base only": maelab_pipeline("keras", device),
    }
    try:
        import kornia

        pipelines["kornia sequential"] = kornia_pipeline(fused=False)
        pipelines["kornia one affine"] = kornia_pipeline(fused=True)
        kornia_version = kornia.__version__
    except ImportError:
        kornia_version = None
        print("kornia is not installed: its rows are skipped (pip install kornia --no-deps kornia_rs)")
    print(f"torch {torch.__version__}, kornia {kornia_version}, {platform.machine()}, "
          f"threads {torch.get_num_threads()}, device {args.device}, batch {args.batch}, "
          f"{IN_SIZE} -> {OUT_SIZE} px, {args.steps} timed calls after {args.warmup}")
    results = {}
    print(f"| {'pipeline':<26} | {'images/s (median)':>17} | {'images/s (best)':>15} |")
    print(f"| {'-' * 26} | {'-' * 17} | {'-' * 15} |")
    for name, fn in pipelines.items():
        results[name] = measure(fn, imgs, args.steps, args.warmup)
        print(f"| {name:<26} | {results[name]['median']:>17,.0f} | {results[name]['best']:>15,.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "batch": args.batch, "torch": torch.__version__,
                       "kornia": kornia_version, "threads": torch.get_num_threads(), "img_per_s": results}, f,
                      indent=2)


if __name__ == "__main__":
    main()
