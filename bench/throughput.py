"""Throughput (images/s), FLOPs and matmul utilisation of maelab, against HF transformers' ViTMAE in the same process.

Usage: python bench/throughput.py [--device cpu|cuda] [--preset keras vit_tiny_p4] [--batch 256] [--rounds 5]
                                  [--steps 3] [--variants pretrain torch-attn seed5 gan features finetune]
                                  [--hf-attn sdpa eager] [--no-hf] [--compile] [--threads N] [--json out.json]

Per preset, on synthetic images held on the device (uint8, 32 px, resized to the model's size in every step):
maelab's real pretraining step (``train_step``: batch prep, masking at 0.75, forward, backward, AdamW) plain, compiled
whole (``whole-step``: ``train.compile_scope=step``; ``whole-step-cudagraphs``: with mode reduce-overhead, its row
failed unless CUDA graphs ran: elsewhere, or with another backend, it runs the whole step without them),
on the CPU also built with PyTorch's ops instead of the CPU's fast paths (``torch-attn``: MAELAB_CPU_KERNELS=0) and
with every fast path whatever the timing at build says (``all-kernels``: MAELAB_CPU_KERNELS=1),
with ``aug.preset=seed5`` and with the GAN; feature extraction as the probe does it (frozen encoder, eval mode,
no masking, ``eval.batch_size`` images a call); a fine-tuning step (the Classifier's ``classifier_step``); HF's
``ViTMAEForPreTraining`` at the identical configuration (bench/hf_vitmae.py) with the same batch prep, the same
AdamW groups and the same autocast; and a large square matmul, the device's measured peak. They run
alternately, ``steps`` calls each per round, so that all see the same machine load; the table gives the median
over rounds. FLOPs are counted analytically (maelab.models.flops) and checked against torch's FlopCounterMode
on both models; utilisation = model FLOP/s ÷ the matmul's FLOP/s measured in the same rounds.
transformers is a bench-only extra (``pip install -e .[bench]``); without it the HF rows are skipped.
``--json`` is rewritten as it goes, with each contender's compile seconds and torch.compile counters
(bench/throughput_record.py says what it holds).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput_record import Recorder, print_checks  # noqa: E402
from timing import Contender, alternate, machine, matmul_peak, table  # noqa: E402

from maelab.config import load_config  # noqa: E402
from maelab.engine.device import autocast  # noqa: E402
from maelab.engine.pretrain import step_function  # noqa: E402
from maelab.engine.run import Run, build_run  # noqa: E402
from maelab.engine.step import step_generators  # noqa: E402
from maelab.eval.features import extract_features, prepare  # noqa: E402
from maelab.eval.finetune import Classifier, classifier_step, finetune_optimizer, mix_batch  # noqa: E402
from maelab.masking import draw_mask  # noqa: E402
from maelab.models import build_mae  # noqa: E402
from maelab.models.cpu import build as cpu_build  # noqa: E402
from maelab.models.flops import classifier_flops, features_flops, mae_forward_flops, train_flops  # noqa: E402
from maelab.seeds import derive_seed  # noqa: E402

RATIO = 0.75
VARIANTS = ("pretrain", "torch-attn", "all-kernels", "seed5", "gan", "features", "finetune", "whole-step",
            "whole-step-cudagraphs")
DEFAULT_VARIANTS = ["pretrain", "torch-attn", "seed5", "gan", "features", "finetune"]
WHOLE_STEP = ["train.compile=true", "train.compile_scope=step"]  # the whole step compiled (issue 16), + backend


def make_run(args: argparse.Namespace, preset: str, tmp: Path, extra: list[str]) -> Run:
    """A pretraining run of ``preset`` on synthetic images (aug none unless ``extra`` says otherwise)."""
    cfg = load_config(None, [
        f"model.preset={preset}", f"train.device={args.device}", f"train.precision={args.precision}",
        f"optim.batch_size={args.batch}", "data.name=synthetic", f"data.synthetic_train={max(args.batch, 512)}",
        f"data.synthetic_test={max(args.eval_batch or 0, 512)}", "aug.preset=none", "optim.lr=1e-4",
        f"train.compile={str(args.compile).lower()}", *extra,
    ])
    return build_run(cfg, tmp / "_".join([preset, *extra]).replace("=", "-"))


def whole_step(args: argparse.Namespace) -> list[str]:
    """The overrides of the whole-step rows: the step compiled whole, with ``--compile-backend``."""
    return [*WHOLE_STEP, f"train.compile_backend={args.compile_backend}"]


def pretrain_contender(name: str, run: Run, flops_per_image: float, cuda_graphs: bool = False) -> Contender:
    """maelab's step (the one the run trains with: eager, or compiled whole) on the first batch of the run's
    images, a fresh seed each call. ``cuda_graphs``: the row is failed unless CUDA graphs ran."""
    x = run.data.x_train[: run.cfg.optim.batch_size]
    step = step_function(run)

    def fn(i: int) -> torch.Tensor:
        return step(run, x, 1e-4, RATIO, step_generators(0, i, run.device))

    return Contender(name, fn, len(x), flops_per_image * len(x), compiled=bool(run.cfg.train.compile),
                     cuda_graphs=cuda_graphs)


def cuda_graphs_run(args: argparse.Namespace, preset: str, tmp: Path) -> Run:
    """The whole step replayed as CUDA graphs (mode reduce-overhead, an inductor mode: only with inductor on CUDA;
    elsewhere the whole step without them, a row that is then failed: the dry run's check of that path)."""
    graphs = args.device == "cuda" and args.compile_backend == "inductor"
    return make_run(args, preset, tmp, [*whole_step(args), *(["train.compile_mode=reduce-overhead"] if graphs else [])])


def torch_kernels_run(args: argparse.Namespace, preset: str, tmp: Path, switch: str = "0") -> Run:
    """The same run built with PyTorch's ops instead of the CPU's fast paths (``MAELAB_CPU_KERNELS=0`` while it
    is built: the kernels are chosen once, when the model is built), or with every fast path (``switch`` "1")."""
    before = os.environ.get(cpu_build.ENV)
    os.environ[cpu_build.ENV] = switch
    try:
        return make_run(args, preset, tmp, ["train.tensorboard=false"])
    finally:
        if before is None:
            del os.environ[cpu_build.ENV]
        else:
            os.environ[cpu_build.ENV] = before


def features_contender(run: Run, batch: int) -> Contender:
    """Feature extraction as the probe runs it: ``extract_features`` over ``batch`` test images in one call."""
    x, data, spec = run.data.x_test[:batch], run.data, run.model.spec

    def fn(_: int) -> torch.Tensor:
        return extract_features(run.model.encoder, x, spec.img_size, data.mean, data.std, run.cfg.probe.pool,
                                batch_size=batch)

    return Contender("maelab features", fn, len(x), features_flops(spec) * len(x))


def finetune_contender(run: Run) -> Contender:
    """One fine-tuning step: finetune's batch prep (its augmentation, mixup/cutmix) and ``classifier_step``."""
    cfg, data, spec, device = run.cfg, run.data, run.model.spec, run.device
    ft = cfg.finetune
    torch.manual_seed(0)
    model = Classifier(spec, data.num_classes, ft.pool, ft.drop_path).to(device)
    opt = finetune_optimizer(model, ft, spec.depth, device)
    aug = dataclasses.replace(cfg.aug, preset=ft.aug)
    x, y = data.x_train[: cfg.optim.batch_size], data.y_train[: cfg.optim.batch_size]
    gen = torch.Generator(device=device)

    def fn(i: int) -> torch.Tensor:
        gen.manual_seed(i)
        imgs = prepare(x, spec.img_size, data.mean, data.std, aug, gen)
        targets = F.one_hot(y, data.num_classes).float()
        imgs, targets = mix_batch(imgs, targets, ft, np.random.default_rng([0, i]))
        return classifier_step(model, opt, imgs, targets, 1e-4, ft, device, run.precision)

    flops = train_flops(classifier_flops(spec, data.num_classes)) * len(x)
    return Contender("maelab finetune", fn, len(x), flops)


def hf_contender(run: Run, attn: str, flops_per_image: float) -> tuple[Contender, torch.nn.Module]:
    """HF's ViTMAEForPreTraining at the run's spec: same batch prep, AdamW groups and autocast as maelab."""
    from hf_vitmae import build_hf_mae, hf_optimizer, hf_train_step

    cfg, data, spec = run.cfg, run.data, run.model.spec
    model = build_hf_mae(spec, RATIO, cfg.model.norm_pix_loss, run.device, attn)
    optimizer = hf_optimizer(model, cfg.optim.weight_decay, (cfg.optim.beta1, cfg.optim.beta2), run.device)
    step_fn: Any = torch.compile(model) if cfg.train.compile else model
    gen = torch.Generator(device=run.device)
    x = data.x_train[: cfg.optim.batch_size]

    def batch(i: int) -> torch.Tensor:
        gen.manual_seed(derive_seed(0, "augment", i))
        return prepare(x, spec.img_size, data.mean, data.std, cfg.aug, gen)

    fn = hf_train_step(step_fn, optimizer, batch, lambda: autocast(run.device, run.precision))
    name = "HF ViTMAE" + ("" if attn == "sdpa" else f" ({attn})")
    return Contender(name, fn, len(x), flops_per_image * len(x), compiled=bool(cfg.train.compile)), model


def counted_forward_flops(model: torch.nn.Module, call: Any) -> int:
    """FLOPs of one forward pass as torch's FlopCounterMode counts them (math attention, so that it sees them)."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        call(model)
    return counter.get_total_flops()


def check_flops(run: Run, hf_model: Optional[torch.nn.Module]) -> dict[str, Any]:
    """Analytic forward FLOPs per image vs FlopCounterMode on a 2-image batch of maelab's model (and HF's)."""
    spec = run.model.spec
    imgs = torch.randn(2, 3, spec.img_size, spec.img_size, device=run.device)
    out = {"analytic_forward": mae_forward_flops(spec, RATIO),
           "analytic_forward_hf": mae_forward_flops(spec, RATIO, reference=True)}
    mask = draw_mask(len(imgs), spec.num_patches, RATIO, run.device)
    plain = build_mae(spec, run.cfg.model.norm_pix_loss, run.cfg.model.loss).to(run.device)  # PyTorch's ops: counted
    out["counted_maelab"] = counted_forward_flops(plain, lambda m: m(imgs, mask)) // 2
    if hf_model is not None:
        out["counted_hf"] = counted_forward_flops(hf_model, lambda m: m(pixel_values=imgs)) // 2
    return out


def build_contenders(args: argparse.Namespace, preset: str, tmp: Path) -> tuple[list[Contender], dict[str, Any]]:
    """The timed contenders of one preset and what to report beside them (parameters, FLOP checks)."""
    run = make_run(args, preset, tmp, [])
    spec = run.model.spec
    pre_flops = train_flops(mae_forward_flops(spec, RATIO)["total"])
    hf_flops = train_flops(mae_forward_flops(spec, RATIO, reference=True)["total"])
    contenders, info = [], {"spec": dataclasses.asdict(spec), "precision": run.precision}
    if "pretrain" in args.variants:
        contenders.append(pretrain_contender("maelab pretrain", run, pre_flops))
    if "torch-attn" in args.variants and run.device.type == "cpu":
        contenders.append(pretrain_contender("maelab pretrain, PyTorch's kernels", torch_kernels_run(args, preset, tmp),
                                             pre_flops))
    if "all-kernels" in args.variants and run.device.type == "cpu":
        contenders.append(pretrain_contender("maelab pretrain, every CPU fast path",
                                             torch_kernels_run(args, preset, tmp, "1"), pre_flops))
    if "whole-step" in args.variants:
        contenders.append(pretrain_contender("maelab pretrain, whole step compiled",
                                             make_run(args, preset, tmp, whole_step(args)), pre_flops))
    if "whole-step-cudagraphs" in args.variants:
        contenders.append(pretrain_contender("maelab pretrain, whole step compiled, CUDA graphs",
                                             cuda_graphs_run(args, preset, tmp), pre_flops, cuda_graphs=True))
    if "seed5" in args.variants:
        contenders.append(pretrain_contender("maelab pretrain seed5", make_run(args, preset, tmp, ["aug.preset=seed5"]),
                                             pre_flops))
    if "gan" in args.variants:
        gan_run = make_run(args, preset, tmp, ["gan.enabled=true"])
        contenders.append(pretrain_contender("maelab pretrain GAN", gan_run, pre_flops))
        info["gan_note"] = "GAN row: FLOPs count the MAE only (the discriminator's are left out)"
    if "features" in args.variants:
        contenders.append(features_contender(run, args.eval_batch or run.cfg.eval.batch_size))
    if "finetune" in args.variants:
        contenders.append(finetune_contender(run))
    hf_model = None
    if not args.no_hf and hf_available():
        from hf_vitmae import param_rows

        for attn in args.hf_attn:
            contender, model = hf_contender(run, attn, hf_flops)
            contenders.append(contender)
            hf_model = hf_model or model
        info["params"] = param_rows(run.model, hf_model)
    info["flops"] = check_flops(run, hf_model)
    return contenders, info


def hf_available() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("transformers is not installed: the HF rows are skipped (pip install -e .[bench])")
        return False
    return True


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", nargs="+", default=["keras"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--eval-batch", type=int, help="feature-extraction images per call (default eval.batch_size)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="timed calls per contender and round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=VARIANTS,
                        help="default: all but whole-step*, whose inductor build takes minutes on the CPU")
    parser.add_argument("--hf-attn", nargs="+", default=["sdpa", "eager"], help="HF attention implementations")
    parser.add_argument("--no-hf", action="store_true")
    parser.add_argument("--precision", default="auto", help="train.precision: auto (bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile maelab's model and HF's")
    parser.add_argument("--compile-backend", default="inductor",
                        help="train.compile_backend of the whole-step rows (aot_eager: the CPU check of the path)")
    parser.add_argument("--peak-size", type=int, help="matmul side for the peak (default 2048 CPU, 8192 CUDA)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU seconds (with --threads 1 on a CPU shared with other jobs: "
                        "what each contender costs, unaffected by time spent descheduled)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    if args.clock == "cpu" and (args.device != "cpu" or args.threads != 1):
        parser.error("--clock cpu needs --device cpu --threads 1 (process time sums every thread's time)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine(device)
    info["clock"] = args.clock
    print(", ".join(f"{k} {v}" for k, v in info.items()) + f"; batch {args.batch}, {args.rounds} rounds × "
          f"{args.steps} calls after {args.warmup} warm-up calls")
    results: dict[str, Any] = {"machine": info, "args": vars(args), "presets": {}}
    recorder = Recorder(results, args.json, device)  # writes the JSON as it goes: a time limit keeps the figures
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.preset:
            contenders, extra = build_contenders(args, preset, Path(tmp))
            peak_dtype = torch.bfloat16 if extra["precision"] == "bf16" else torch.float32
            peak = matmul_peak(device, args.peak_size or (8192 if device.type == "cuda" else 2048), peak_dtype)
            print(f"\n== {preset} ({extra['precision']}) ==")
            recorder.begin(preset, extra, contenders, peak, args.rounds)
            clock = time.process_time if args.clock == "cpu" else time.perf_counter
            alternate([peak, *contenders], device, args.rounds, args.steps, args.warmup, clock=clock,
                       observer=recorder)
            print(table(contenders, peak)[0])
            print("\n".join(recorder.failures()) or "every row ran as meant")
            print_checks(extra)
            recorder.finish_preset()
    recorder.finish()
    return results


if __name__ == "__main__":
    main()
