"""What a run trains on and with, said when it starts and kept in the run folder.

Each start (a new run, or a resume) prints a short banner on stderr (the main rank) and appends the same facts
to ``RUN_DIR/run_info.json``: the data's source and size, the model and its parameter count, the device,
precision and CPU threads, the global batch, steps per epoch, the resolved peak lr and warm-up, what is compiled.
A resume on the CPU with another thread count than the run trained with is warned about: the CPU's float sums
depend on the thread count, so a resume is bit-exact only with the same one (docs/reliability.md).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

from maelab.atomic import write_text_atomic
from maelab.models.cpu import kernels_in
from maelab.run_layout import RunLayout

if TYPE_CHECKING:
    from maelab.engine.run import Run


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model (from /proc/cpuinfo where there is one)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compiled(run: Run) -> str:
    """What the run compiles, in words: "nothing (eager)", "the model's forward (inductor)", "the whole step
    (inductor, CUDA graphs)"."""
    plan = run.compile
    if plan.scope is None:
        return "nothing (eager)"
    what = "the whole step" if plan.scope == "step" else "the model's forward"
    how = plan.backend + (", CUDA graphs" if plan.cuda_graphs else "") + \
        (f", mode {plan.mode}" if plan.mode not in ("default", "reduce-overhead") else "")
    return f"{what} ({how})"


def cpu_kernels(model: torch.nn.Module) -> Optional[str]:
    """The CPU fast paths in use and how they were chosen (:mod:`maelab.models.cpu.choice`); None with PyTorch's."""
    choice = kernels_in(model)
    return None if choice is None else choice.summary()


def run_facts(run: Run) -> dict[str, Any]:
    """The facts of this start of ``run`` (JSON-ready)."""
    data, cfg = run.data, run.cfg
    return {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "at_step": run.step,
        "data": {"name": data.name, "source": data.source or "generated", "train_images": len(data.x_train),
                 "test_images": None if data.x_test is None else len(data.x_test),
                 "classes": data.num_classes or None, "image_size": data.image_size},
        "model": {"preset": cfg.model.preset, "parameters": sum(p.numel() for p in run.model.parameters()),
                  "patch_size": run.model.spec.patch_size, "num_patches": run.model.spec.num_patches},
        "device": str(run.device), "device_name": device_name(run.device), "precision": run.precision,
        "threads": torch.get_num_threads(), "world_size": run.dist.world_size,
        "global_batch": run.global_batch, "steps_per_epoch": run.steps_per_epoch, "epochs": cfg.optim.epochs,
        "peak_lr": run.lr_schedule.peak, "warmup_steps": run.lr_schedule.warmup_steps,
        "compiled": compiled(run),
        "cpu_kernels": cpu_kernels(run.model),
    }


def banner_lines(facts: dict[str, Any]) -> list[str]:
    """The banner: four lines of ``facts``."""
    d, m = facts["data"], facts["model"]
    split = f"{d['train_images']:,} train" + (f" / {d['test_images']:,} test" if d["test_images"] is not None
                                                else " (no test split)")
    classes = f", {d['classes']} classes" if d["classes"] else ", unlabeled"
    start = f"resuming at step {facts['at_step']}" if facts["at_step"] else "starting"
    ranks = f", {facts['world_size']} ranks" if facts["world_size"] > 1 else ""
    return [f"{start}: data {d['name']} from {d['source']}: {split} images of {d['image_size']} px{classes}",
            f"model {m['preset']}: {m['parameters'] / 1e6:.2f} M parameters, {m['num_patches']} patches of "
            f"{m['patch_size']} px",
            f"on {facts['device']} ({facts['device_name']}), {facts['precision']}, "
            f"{counted(facts['threads'], 'CPU thread')}{ranks}; compiled: {facts['compiled']}"
            + (f"; CPU kernels: {facts['cpu_kernels']}" if facts.get("cpu_kernels") else ""),
            f"global batch {facts['global_batch']}, {facts['steps_per_epoch']} steps an epoch × {facts['epochs']}"
            f"{left_out(d['train_images'], facts['global_batch'])}, peak lr {facts['peak_lr']:.3g} after "
            f"{counted(facts['warmup_steps'], 'warm-up step')}"]


def left_out(images: int, global_batch: int) -> str:
    """" (each epoch leaves out 12 of the 60 images, ...)" when the global batches do not divide the training set
    (the last partial batch is dropped, as facebookresearch/mae's loader does); "" when they do."""
    rest = images % global_batch
    if rest == 0:
        return ""
    return (f" (each epoch leaves out {rest} of the {images:,} images, the last partial batch of a new shuffle: "
            "every image is seen over the epochs)")


def thread_warning(trained_with: Optional[int], facts: dict[str, Any]) -> Optional[str]:
    """The warning for a CPU resume with another thread count than the checkpoint's; None when they agree, off
    the CPU, or for a checkpoint that did not record it."""
    if trained_with is None or not facts["device"].startswith("cpu") or trained_with == facts["threads"]:
        return None
    return (f"this run trained with {counted(trained_with, 'CPU thread')} and resumes with {facts['threads']}: on the "
            f"CPU a resume is bit-exact only with the same thread count (set train.threads={trained_with})")


def announce(run: Run, trained_with_threads: Optional[int] = None) -> dict[str, Any]:
    """Print the banner (and a thread warning on a resume) on stderr and append the facts to
    RUN_DIR/run_info.json; returns them. Main rank only."""
    facts = run_facts(run)
    for line in banner_lines(facts):
        print(f"maelab: {line}", file=sys.stderr, flush=True)
    warning = thread_warning(trained_with_threads, facts)
    if warning:
        print(f"maelab: warning: {warning}", file=sys.stderr, flush=True)
    record_start(run.run_dir, facts)
    return facts


def record_start(run_dir: Path, facts: dict[str, Any]) -> None:
    """Append ``facts`` to RUN_DIR/run_info.json (a list: one record per start), atomically."""
    path = RunLayout(run_dir).run_info
    starts = json.loads(path.read_text()) if path.is_file() else []
    write_text_atomic(path, json.dumps([*starts, facts], indent=2))
