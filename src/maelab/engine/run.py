"""A pretraining run in memory: config, data, model, optimizer and schedules, built once; its checkpoint state."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from maelab.addons import AddOn, AddOnContext, build_addons
from maelab.config import Config, persisted, to_dict
from maelab.data import Dataset, load_dataset, steps_per_epoch
from maelab.data.normalize import Normalizer
from maelab.engine.compile_cache import check_compile_cache
from maelab.engine.compile_plan import CompilePlan, plan_compile
from maelab.engine.device import configure_backends, resolve_device, resolve_precision
from maelab.engine.distributed import Dist, resume_step
from maelab.engine.numerics import NanPolicy
from maelab.engine.optim import build_optimizer
from maelab.engine.update import Updater
from maelab.interop.init_from import load_init_weights
from maelab.masking import MaskRatio, round_ratio
from maelab.models import MAE, build_mae, resolve_spec
from maelab.models.cpu import kernels_for, kernels_in, use_kernels
from maelab.models.cpu.choice import mae_workload
from maelab.schedules import LRSchedule, mask_ratio_at, mask_ratios_at, mask_schedule_warning


@dataclass
class Run:
    """Everything a pretraining run holds while it trains."""

    cfg: Config
    run_dir: Path
    device: torch.device
    precision: str
    data: Dataset
    model: MAE
    forward: Any  # the model, or its torch.compile'd wrapper
    updater: Updater  # the MAE's optimizer step: optimizer, fp16 scaler, clipping, train.on_nan
    normalize: Normalizer  # the dataset's per-channel standardisation, on the device
    steps_per_epoch: int
    total_steps: int
    lr_schedule: LRSchedule  # optim.*'s warm-up and cosine, per iteration
    step: int = 0
    addons: list[AddOn] = dataclasses.field(default_factory=list)  # built from the config: maelab.addons
    dist: Dist = dataclasses.field(default_factory=Dist)  # this process's rank under torchrun (Dist(): alone)
    compile: CompilePlan = dataclasses.field(default_factory=CompilePlan)  # eager, the model's forward or the step

    @property
    def global_batch(self) -> int:
        """Images per optimizer step over all ranks: optim.batch_size x optim.accum_steps x world_size."""
        return self.rank_batch * self.dist.world_size

    @property
    def rank_batch(self) -> int:
        """Images per optimizer step on this rank: optim.accum_steps micro-batches of optim.batch_size."""
        return self.cfg.optim.step_batch

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.updater.optimizer

    @property
    def scaler(self) -> Optional[torch.amp.GradScaler]:
        return self.updater.scaler

    @property
    def nan(self) -> NanPolicy:
        """train.on_nan: what a non-finite step does, and the count of bad steps."""
        return self.updater.nan

    def active_addons(self) -> list[AddOn]:
        """The add-ons that train at the current step (the GAN: gan.enabled and epoch >= gan.start_epoch)."""
        epoch = self.step // self.steps_per_epoch
        return [a for a in self.addons if a.active(epoch)]

    def addon(self, name: str) -> Optional[AddOn]:
        """The run's add-on called ``name`` (its checkpoint key), or None when the config leaves it off."""
        return next((a for a in self.addons if a.name == name), None)

    def mask_ratio(self, epoch: int, step: int) -> MaskRatio:
        """The step's mask ratio, rounded to whole patches once: the step draws its masks with it and the log reads
        the ratio the encoder sees from it (``.effective``).

        With ``mask.per_sample`` the counts of each image of the global batch (its ratio drawn from (seed, step));
        each rank takes its rows in :func:`train_step`.
        """
        if self.cfg.mask.per_sample:
            ratio = mask_ratios_at(self.cfg.mask, step, self.cfg.train.seed, self.global_batch)
        else:
            ratio = mask_ratio_at(self.cfg.mask, epoch, step, self.cfg.optim.epochs, self.steps_per_epoch,
                                  self.cfg.train.seed)
        return round_ratio(self.model.spec.num_patches, ratio)


def build_run(cfg: Config, run_dir: Path, checkpoint: Optional[dict] = None, dist: Optional[Dist] = None) -> Run:
    """Data on the device, model, optimizer and schedules; state restored from ``checkpoint`` if given.

    Under torchrun (``dist``) the model trains in DistributedDataParallel and a step takes optim.batch_size
    images on each rank (see docs/distributed.md).
    """
    dist = dist or Dist()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = dist.device(resolve_device(cfg.train.device))
    precision = resolve_precision(cfg.train.precision, device)
    configure_backends(device, cfg.train.tf32, cfg.train.deterministic)
    plan = plan_compile(cfg, device, precision, dist.world_size)  # before the data: a refusal costs nothing
    check_compile_cache(cfg.train.compile_cache, compiles=plan.scope is not None)
    spec = resolve_spec(cfg.model)
    data = dist.main_first(load_dataset, cfg.data, cfg.train.seed,  # rank 0 downloads, if anyone
                           progress=cfg.train.progress and dist.is_main).to(device)
    spe = steps_per_epoch(len(data.x_train), cfg.optim.step_batch, dist.world_size)
    torch.manual_seed(cfg.train.seed)
    # chosen once: the CPU's fast paths measured faster at this model's shapes (a resume: those it trained with)
    kernels = kernels_for(device, precision, mae_workload(spec, cfg.optim.step_batch, typical_ratio(cfg.mask)),
                          recorded=(checkpoint or {}).get("cpu_kernels"))
    model = use_kernels(build_mae(spec, cfg.model.norm_pix_loss, cfg.model.loss), kernels)
    if cfg.model.init_from and checkpoint is None:  # a resume takes its weights from the checkpoint
        load_init_weights(model, cfg)
    model = model.to(device)
    optimizer = build_optimizer(model, cfg.optim, device)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    # after the MAE's init and optimizer, so that its draws are the same with any add-on on or off
    addons = build_addons(cfg, AddOnContext(spec, device, precision, dist.average_grads if dist.enabled else None),
                          reserved=CHECKPOINT_KEYS)
    if plan.scope == "step" and addons:  # the whole step compiled holds none: the config's own conflicts say so
        plan = plan_compile(cfg, device, precision, dist.world_size, [a.name for a in addons])
    forward = dist.wrap(model)
    run = Run(
        cfg=cfg, run_dir=run_dir, device=device, precision=precision, data=data, model=model,
        forward=model_forward(forward, plan),
        updater=Updater(optimizer, scaler, model.parameters(), cfg.optim.grad_clip,
                        NanPolicy(cfg.train.on_nan, cfg.train.max_skipped_steps, device)),
        normalize=Normalizer(data.mean, data.std, device),
        steps_per_epoch=spe, total_steps=cfg.optim.epochs * spe,
        lr_schedule=LRSchedule.for_pretraining(cfg.optim, spe, dist.world_size), addons=addons, dist=dist,
        compile=plan,
    )
    if checkpoint is not None:
        restore(run, checkpoint)
    return run


def typical_ratio(mask: Any) -> float:
    """The mask ratio the CPU kernels are timed at: the constant schedule's, else the middle of [min, max]."""
    return mask.ratio if mask.schedule == "constant" else (mask.min + mask.max) / 2


def cpu_kernels_state(model: torch.nn.Module) -> dict[str, Any]:
    """{"cpu_kernels": the CPU fast paths the model computes with} for a checkpoint; {} for PyTorch's ops."""
    choice = kernels_in(model)
    return {} if choice is None else {"cpu_kernels": choice.as_dict()}


FEW_STEPS = 100  # a run of fewer optimizer steps than this is warned about when it starts: it learns little
# ... and one of fewer than this, more mildly: a newcomer's 180-step run of the own-images recipe ended below its
# random-init floor, and the gan_lowdata suite's 150 steps learned little where 2,350 learned shapes
SHORT_RUN = 500


def start_notes(run: Run) -> list[str]:
    """The lines a run prints when it starts about choices made for it: what is compiled (and why not the whole
    step), fp16 where ``train.precision=auto`` found a card without bf16, a mask schedule that cannot reach
    ``mask.max``, a run too short for its lr schedule, and an image folder loaded at another size than the model's."""
    notes = [run.compile.note] if run.compile.note else []
    if run.cfg.train.precision == "auto" and run.precision == "fp16":
        notes.append(f"precision: fp16 with a loss scaler ({torch.cuda.get_device_name(run.device)} has no bf16)")
    schedule = mask_schedule_warning(run.cfg.mask, run.cfg.optim.epochs, run.steps_per_epoch)
    notes += [schedule] if schedule else []  # said once, at the start (the schedule itself is a pure function)
    few = few_steps_warning(run.total_steps, run.steps_per_epoch, run.cfg.optim.epochs, run.global_batch)
    spec, folder = run.model.spec, run.cfg.data.name == "folder"
    resized = resize_note(run.data.image_size, spec.img_size, spec.patch_size) if folder else None
    return notes + [note for note in (few, resized) if note]


def resize_note(stored: int, model: int, patch: int) -> Optional[str]:
    """One line when an image folder is loaded at another size than the model's input (data.image_size against
    model.img_size): every step then resizes each image again; None when they agree. Training at the stored size
    is offered only where the patch size divides it."""
    if stored == model:
        return None
    other = f", or model.img_size={stored} to train at that size" if stored % patch == 0 else ""
    return (f"warning: the images are loaded at data.image_size={stored} px and resized to the model's {model} px "
            f"at every step (a second resampling, and time): set data.image_size={model}{other}")


def few_steps_warning(total: int, per_epoch: int, epochs: int, batch: int) -> Optional[str]:
    """One line when a run has fewer than :data:`SHORT_RUN` optimizer steps (stronger under :data:`FEW_STEPS`),
    with the epochs that would reach that many; None otherwise."""
    if total >= SHORT_RUN:
        return None
    epochs_text = f"{epochs} epoch{'' if epochs == 1 else 's'}"
    target = FEW_STEPS if total < FEW_STEPS else SHORT_RUN
    why = ("the lr schedule's warm-up and decay have almost nothing to work with and the model will learn little"
           if total < FEW_STEPS else "MAE pretraining usually needs thousands, and a run this short can end below "
           "its random-init floor")
    return (f"warning: only {total} optimizer steps ({per_epoch} an epoch of batch {batch} x {epochs_text}): {why}; "
            f"raise optim.epochs (optim.epochs={-(-target // per_epoch)} gives {target} steps) or lower "
            "optim.batch_size")


def model_forward(forward: torch.nn.Module, plan: CompilePlan) -> Any:
    """What a step calls: the model, or when ``plan`` compiles the model (``train.compile_scope=model``) its forward
    under torch.compile (its backward through AOT autograd). When it compiles the step the model stays as it is."""
    if plan.scope != "model":
        return forward
    return torch.compile(forward, **plan.options())


CHECKPOINT_KEYS = ("model", "optimizer", "step", "epoch", "steps_per_epoch", "global_batch", "world_size", "config",
                   "data_source", "threads", "cpu_kernels", "rng", "scaler")  # the engine's keys: no add-on's name


def checkpoint_state(run: Run) -> dict[str, Any]:
    """What a checkpoint holds: weights, optimizer, scaler, position, RNG states and the config."""
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "step": run.step,
        "epoch": run.step // run.steps_per_epoch,
        "steps_per_epoch": run.steps_per_epoch,  # with global_batch: where to resume under another world size
        "global_batch": run.global_batch,
        "world_size": run.dist.world_size,
        "config": to_dict(persisted(run.cfg)),
        "data_source": run.data.source,
        "threads": torch.get_num_threads(),  # a CPU resume is bit-exact with the same count only (engine/banner.py)
        **cpu_kernels_state(run.model),  # and with the same CPU fast paths: a resume uses these
        "rng": {"torch": torch.get_rng_state()},
    }
    if run.scaler is not None:
        state["scaler"] = run.scaler.state_dict()
    for addon in run.addons:  # each under its name (the GAN's D, its optimizer and scaler under "gan")
        state[addon.name] = addon.state_dict()
    if run.device.type == "cuda":
        state["rng"]["cuda"] = torch.cuda.get_rng_state(run.device)
    return state


def restore(run: Run, state: dict[str, Any]) -> None:
    """Load a checkpoint's state into a freshly built run."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scaler is not None and "scaler" in state:
        run.scaler.load_state_dict(state["scaler"])
    for addon in run.addons:  # one turned on when resumed starts afresh (the GAN: a new D)
        if addon.name in state:  # a state that no longer fits is refused, naming the changed settings
            addon.load_state_dict(state[addon.name], state["config"], f"{run.run_dir}'s checkpoint")
    torch.set_rng_state(state["rng"]["torch"])
    if run.device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], run.device)
    run.step = resume_step(int(state["step"]), int(state.get("steps_per_epoch", run.steps_per_epoch)),
                           int(state.get("global_batch", run.global_batch)), run.steps_per_epoch, run.global_batch)
