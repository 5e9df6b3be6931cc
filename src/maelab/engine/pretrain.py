"""MAE pretraining: the epoch loop, the train step, checkpoints and metrics."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor
from tqdm import tqdm

from maelab.config import Config, load_config, persisted, save_config, to_dict
from maelab.data import Dataset, augment, epoch_batches, load_dataset, on_disk, steps_per_epoch
from maelab.engine.checkpoint import TRAINING_KEYS, checkpoint_path, load_checkpoint, save_checkpoint
from maelab.engine.device import autocast, resolve_device, resolve_precision
from maelab.engine.distributed import Dist, distributed, resume_step
from maelab.engine.gan import DISC_SHAPE, Gan, build_gan, discriminator_step, frozen, generator_step, masked_input
from maelab.engine.metrics import MetricsLogger, NullLogger, drop_metrics_after
from maelab.engine.numerics import NanPolicy, optimizer_step
from maelab.engine.optim import build_optimizer, peak_lr, warmup_steps
from maelab.engine.resume_checks import check_trains
from maelab.engine.run_dir import CONFIG_NAME, check_run_dir, prepare_run_dir
from maelab.engine.signals import RunInterrupted, StopRequest, catch_stop_signals
from maelab.engine.state_fit import changed_settings, require_fit
from maelab.errors import UserError
from maelab.masking import effective_ratio, effective_ratios
from maelab.models import MAE, build_mae, resolve_spec
from maelab.schedules import lr_at, mask_ratio_at, mask_ratios_at
from maelab.undefined import set_undefined


def step_seed(seed: int, step: int) -> int:
    """The seed of one step's random draws: a pure function of (seed, step)."""
    return (seed * 1_000_003 + step * 7_919 + 12_345) % (2**63 - 1)


MASK_STREAM = 0x9E3779B97F4A7C15  # offsets the masks' seed from the augmentation's (any fixed odd constant)


@dataclass(frozen=True)
class StepGenerators:
    """One step's two random streams, augmentation and masks, each seeded from (seed, step).

    Apart so that a variant that changes one leaves the other's draws as they were: in an ablation, seed k's
    variants with more augmentation ops still mask the same patches as the baseline (common random numbers, the
    reason the report can pair seeds)."""

    augment: torch.Generator
    mask: torch.Generator


def step_generators(seed: int, step: int, device: torch.device | str = "cpu") -> StepGenerators:
    base = step_seed(seed, step)
    return StepGenerators(torch.Generator(device=device).manual_seed(base),
                          torch.Generator(device=device).manual_seed((base + MASK_STREAM) % (2**63 - 1)))


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
    optimizer: torch.optim.Optimizer
    scaler: Optional[torch.amp.GradScaler]
    mean: Tensor  # [1, 3, 1, 1]
    std: Tensor  # [1, 3, 1, 1]
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    peak_lr: float
    nan: NanPolicy  # train.on_nan: what a non-finite step does, and the count of bad steps
    step: int = 0
    gan: Optional[Gan] = None  # the discriminator and its optimizer; None unless gan.enabled
    dist: Dist = dataclasses.field(default_factory=Dist)  # this process's rank under torchrun (Dist(): alone)

    @property
    def global_batch(self) -> int:
        """Images per optimizer step over all ranks: optim.batch_size x world_size."""
        return self.cfg.optim.batch_size * self.dist.world_size

    def active_gan(self) -> Optional[Gan]:
        """The GAN when it trains at the current step (gan.enabled and epoch >= gan.start_epoch), else None."""
        if self.gan is None or not self.gan.active(self.step // self.steps_per_epoch):
            return None
        return self.gan

    def lr(self, step: int) -> float:
        return lr_at(step, self.total_steps, self.warmup_steps, self.peak_lr, self.cfg.optim.min_lr)

    def mask_ratio(self, epoch: int, step: int) -> float | Tensor:
        """The ratio the encoder sees at this step: the schedule's value after rounding and clamping.

        With ``mask.per_sample`` a CPU tensor [global batch] of each image's ratio (drawn from (seed, step));
        each rank takes its rows in :func:`train_step`.
        """
        if self.cfg.mask.per_sample:
            ratios = mask_ratios_at(self.cfg.mask, step, self.cfg.train.seed, self.global_batch)
            return effective_ratios(self.model.spec.num_patches, ratios)
        ratio = mask_ratio_at(self.cfg.mask, epoch, step, self.cfg.optim.epochs, self.steps_per_epoch,
                              self.cfg.train.seed)
        return effective_ratio(self.model.spec.num_patches, ratio)


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
    spec = resolve_spec(cfg.model)
    data = dist.main_first(load_dataset, cfg.data, cfg.train.seed).to(device)  # rank 0 downloads, if anyone
    spe = steps_per_epoch(len(data.x_train), cfg.optim.batch_size, dist.world_size)
    torch.manual_seed(cfg.train.seed)
    model = build_mae(spec, cfg.model.norm_pix_loss, cfg.model.loss).to(device)
    optimizer = build_optimizer(model, cfg.optim, device)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    gan = build_gan(cfg.gan, spec.img_size, device, precision) if cfg.gan.enabled else None  # after the MAE's init
    if gan is not None and dist.enabled:
        gan.sync_grads = lambda: dist.average_grads(gan.disc)
    forward = dist.wrap(model)
    run = Run(
        cfg=cfg, run_dir=run_dir, device=device, precision=precision, data=data, model=model,
        forward=torch.compile(forward) if cfg.train.compile else forward,
        optimizer=optimizer, scaler=scaler,
        mean=torch.tensor(data.mean, device=device).view(1, 3, 1, 1),
        std=torch.tensor(data.std, device=device).view(1, 3, 1, 1),
        steps_per_epoch=spe, total_steps=cfg.optim.epochs * spe,
        warmup_steps=warmup_steps(cfg.optim, spe), peak_lr=peak_lr(cfg.optim, dist.world_size), gan=gan, dist=dist,
        nan=NanPolicy(cfg.train.on_nan, cfg.train.max_skipped_steps, device),
    )
    if checkpoint is not None:
        restore(run, checkpoint)
    return run


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
        "rng": {"torch": torch.get_rng_state()},
    }
    if run.scaler is not None:
        state["scaler"] = run.scaler.state_dict()
    if run.gan is not None:
        state["gan"] = run.gan.state_dict()  # D, its optimizer and its scaler
    if run.device.type == "cuda":
        state["rng"]["cuda"] = torch.cuda.get_rng_state(run.device)
    return state


def restore(run: Run, state: dict[str, Any]) -> None:
    """Load a checkpoint's state into a freshly built run."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scaler is not None and "scaler" in state:
        run.scaler.load_state_dict(state["scaler"])
    if run.gan is not None and "gan" in state:  # a run that turns the GAN on when resumed starts with a fresh D
        shaping = {k: v for k, v in state["config"]["gan"].items() if k in DISC_SHAPE}
        require_fit(run.gan.disc, state["gan"]["disc"], f"the discriminator saved in {run.run_dir}'s checkpoint",
                    changed_settings(shaping, {k: getattr(run.cfg.gan, k) for k in shaping}, "gan"),
                    "Drop those gan.* overrides to resume, or start a new run with them")
        run.gan.load_state_dict(state["gan"])
    torch.set_rng_state(state["rng"]["torch"])
    if run.device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], run.device)
    run.step = resume_step(int(state["step"]), int(state.get("steps_per_epoch", run.steps_per_epoch)),
                           int(state.get("global_batch", run.global_batch)), run.steps_per_epoch, run.global_batch)


def train_step(run: Run, imgs_u8: Tensor, lr: float, ratio: float | Tensor, generators: StepGenerators,
               logs: Optional[dict[str, Tensor]] = None) -> Tensor:
    """One optimizer step on a uint8 batch [B, H, W, 3]; returns the reconstruction loss as a device tensor
    (no host sync). Under torchrun the batch is this rank's shard, ``ratio`` (per-sample: [world_size x B]) is
    the global batch's, and the loss and logs returned are the means over the ranks.

    With the GAN training (gan.enabled, from gan.start_epoch), the MAE steps on L_rec + λ·L_adv with D
    frozen, then D steps on the batch vs the detached reconstruction; the phases' logs (detached device
    tensors: g_adv, gan_weight, d_loss, d_real, d_fake) are written into ``logs`` when it is given.
    """
    shard = run.dist.shard  # this rank's rows of the step's random draws (all of them in one process)
    imgs = augment(imgs_u8, run.cfg.aug, run.model.spec.img_size, generators.augment, shard)
    imgs = (imgs - run.mean) / run.std
    if isinstance(ratio, Tensor):  # per-sample ratios come for the global batch
        ratio = shard.rows(ratio)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    gan = run.active_gan()
    with frozen(gan.disc if gan is not None else None):
        with autocast(run.device, run.precision):
            loss, pred, mask = run.forward(imgs, ratio, generator=generators.mask, shard=shard,
                                           full_pred=gan is not None)
            objective = loss
            if gan is not None:
                fake = run.model.reconstruct(imgs, pred, mask)  # visible patches pasted back, normalised space
                cond = masked_input(imgs, mask, run.model.spec.patch_size) if gan.cfg.conditional else None
                scale = run.scaler.scale(torch.ones((), device=run.device)) if run.scaler is not None else 1.0
                objective, g_logs = generator_step(gan, fake, cond, loss, run.model.decoder.head.weight, scale)
        run.optimizer.zero_grad(set_to_none=True)
        (run.scaler.scale(objective) if run.scaler is not None else objective).backward()
        skipped = optimizer_step(run.optimizer, run.scaler, run.model.parameters(), run.cfg.optim.grad_clip,
                                 run.nan.guard(objective))
    if gan is not None:
        _, d_logs = discriminator_step(gan, imgs, fake.detach(), cond, skipped)  # D skips with the MAE
        if logs is not None:
            logs.update(run.dist.mean_dict({**g_logs, **d_logs}))
    loss = run.dist.mean(loss.detach())  # the mean over the ranks: every rank logs and checks the same loss
    run.nan.add(loss, skipped, run.step)
    return loss


ALL_SKIPPED = "no step of the epoch ended with a finite loss (each was skipped, train.on_nan=skip): no loss to average"


class EpochStats:
    """Device-side accumulators for an epoch: the sum and count of the finite losses, and the GAN logs."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        self.count = torch.zeros((), device=device, dtype=torch.float64)
        self.log_sums: dict[str, Tensor] = {}  # the GAN phases' logs, summed on the device
        self.log_counts: dict[str, int] = {}

    def add_logs(self, logs: dict[str, Tensor]) -> None:
        for key, value in logs.items():
            self.log_sums[key] = self.log_sums.get(key, 0.0) + value.double()
            self.log_counts[key] = self.log_counts.get(key, 0) + 1

    def log_means(self) -> dict[str, float]:
        """Host sync: each log's mean over the steps that logged it."""
        return host_floats({k: v / self.log_counts[k] for k, v in self.log_sums.items()})

    def add(self, loss: Tensor) -> None:
        finite = torch.isfinite(loss)  # a non-finite loss stops the run or its step is skipped (train.on_nan)
        self.loss_sum += torch.where(finite, loss.double(), 0.0)
        self.count += finite

    def mean_loss(self) -> Optional[float]:
        """Host sync: the epoch's mean finite loss; None when every step was skipped (the mean of no values)."""
        mean = float((self.loss_sum / self.count).item())  # 0 / 0 = NaN: no finite loss
        return None if math.isnan(mean) else mean


def host_floats(logs: dict[str, Tensor]) -> dict[str, float]:
    """0-d device tensors as floats, in one host sync."""
    if not logs:
        return {}
    values = torch.stack([v.detach().double() for v in logs.values()]).tolist()
    return dict(zip(logs, values, strict=True))


def run_epoch(run: Run, epoch: int, logger: MetricsLogger, bar: Optional[tqdm],
              stop: Optional[StopRequest] = None) -> Optional[dict[str, float]]:
    """Train the remaining steps of ``epoch``; returns the epoch's metrics, or None when ``stop`` was requested
    before its last step (the run is then between two steps, ready for a checkpoint)."""
    cfg = run.cfg
    batches = epoch_batches(len(run.data.x_train), cfg.optim.batch_size, cfg.train.seed, epoch, run.dist.rank,
                            run.dist.world_size, run.data.x_train.device)
    stats = EpochStats(run.device)
    start_index = run.step - epoch * run.steps_per_epoch
    t_epoch = t_log = time.perf_counter()
    images_since_log = 0
    lr = ratio_sum = 0.0  # ratio_sum: the ratios the encoder saw, for the epoch's mean
    for index in range(start_index, run.steps_per_epoch):
        lr, ratio = run.lr(run.step), run.mask_ratio(epoch, run.step)
        seen = float(ratio.mean()) if isinstance(ratio, Tensor) else ratio  # per-sample: the batch's mean
        ratio_sum += seen
        logs: dict[str, Tensor] = {}  # the GAN phases' device-side logs (empty while the GAN is off)
        generators = step_generators(cfg.train.seed, run.step, run.device)
        loss = train_step(run, run.data.x_train[batches[index]], lr, ratio, generators, logs)
        stats.add(loss)
        stats.add_logs(logs)
        run.step += 1
        images_since_log += run.global_batch
        if run.step % cfg.train.log_every == 0 or run.device.type == "cpu":
            run.nan.check()
        if run.step % cfg.train.log_every == 0:
            now = time.perf_counter()
            record = {"epoch": epoch, "step": run.step, "loss": float(loss.item()), "lr": lr,
                      "mask_ratio": seen, "img_per_s": images_since_log / max(now - t_log, 1e-9),
                      **host_floats(logs), **run.nan.log_fields()}
            if run.gan is not None:
                record.update(run.gan.collapse.update(record))
            logger.log("step", record)
            t_log, images_since_log = now, 0
            if bar is not None:
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}", ratio=f"{seen:.2f}",
                                img_s=f"{record['img_per_s']:.0f}")
        if bar is not None:
            bar.update(1)
        if stop is not None and stop.requested and index < run.steps_per_epoch - 1:
            run.nan.check()
            return None
    run.nan.check()
    seconds = time.perf_counter() - t_epoch
    steps_done = run.steps_per_epoch - start_index
    record = {"epoch": epoch, "step": run.step, "loss": stats.mean_loss(),
              "lr": lr, "mask_ratio": ratio_sum / max(steps_done, 1),  # the mean over the epoch's steps
              "img_per_s": steps_done * run.global_batch / max(seconds, 1e-9), "seconds": seconds,
              **stats.log_means(), **run.nan.epoch_fields()}
    if record["loss"] is None:
        set_undefined(record, "loss", ALL_SKIPPED)
    return record


def knn_monitor(run: Run) -> float:
    """k-NN top-1 (%) of the encoder as it is now (the run's train/test sets; eval.knn_every)."""
    from maelab.eval.knn import encoder_knn_top1

    was_training = run.model.training
    top1 = encoder_knn_top1(run.model.encoder, run.data, run.model.spec.img_size, run.cfg.knn,
                            run.cfg.eval.batch_size)
    run.model.train(was_training)
    return top1


def train(run: Run) -> None:
    """The epoch loop from the run's current step to the end (or to train.stop_after_epochs)."""
    cfg = run.cfg
    last_epoch = cfg.optim.epochs
    if cfg.train.stop_after_epochs is not None:
        last_epoch = min(last_epoch, cfg.train.stop_after_epochs)
    main = run.dist.is_main  # only rank 0 writes files and shows progress
    logger = MetricsLogger(run.run_dir, tensorboard=cfg.train.tensorboard) if main else NullLogger()
    bar = None
    if cfg.train.progress and main:
        bar = tqdm(total=last_epoch * run.steps_per_epoch, initial=min(run.step, last_epoch * run.steps_per_epoch),
                   desc="pretrain", unit="step", dynamic_ncols=True)
    try:
        with catch_stop_signals() as local_stop:
            stop = run.dist.synced(local_stop)  # every rank stops at the same step
            for epoch in range(run.step // run.steps_per_epoch, last_epoch):
                record = run_epoch(run, epoch, logger, bar, stop)
                if record is not None:
                    if cfg.eval.knn_every and (epoch + 1) % cfg.eval.knn_every == 0 and main:
                        record["knn_top1"] = knn_monitor(run)
                    logger.log("epoch", record)
                run.dist.main_only(lambda: save_checkpoint(checkpoint_state(run), checkpoint_path(run.run_dir)))
                if stop.requested and run.step < last_epoch * run.steps_per_epoch:
                    raise RunInterrupted(run.run_dir, run.step, stop.signum)
    finally:
        if bar is not None:
            bar.close()
        logger.close()


def pretrain(cfg: Config) -> Path:
    """Start a new pretraining run (on every rank under torchrun); returns its run directory."""
    with distributed(cfg.train.device) as dist:
        run_dir = dist.main_only(check_run_dir, cfg.out_dir, cfg.name, cfg.overwrite)
        run = build_run(cfg, run_dir, dist=dist)  # data and model first: a mistake found here changes no file
        dist.main_only(prepare_run_dir, str(run_dir), cfg.name, cfg.overwrite)
        dist.main_only(save_config, cfg, run_dir / CONFIG_NAME)
        train(run)
    return run_dir


def resume(run_dir: str | Path, overrides: list[str]) -> Path:
    """Continue the run in ``run_dir`` from its last checkpoint; ``overrides`` may extend it (optim.epochs=...)."""
    run_dir = Path(run_dir)
    state = load_checkpoint(checkpoint_path(run_dir), needs=TRAINING_KEYS)
    saved = {**state["config"], "train": {**state["config"]["train"], "stop_after_epochs": None}}  # older runs kept it
    cfg = load_config(None, [*overrides, f"out_dir={run_dir}"], base=saved)
    saved_model = state["config"]["model"]
    if to_dict(cfg)["model"] != saved_model:
        changed = sorted(k for k, v in to_dict(cfg)["model"].items() if saved_model.get(k) != v)
        raise UserError(
            f"cannot resume {run_dir} with a different model config (model.{', model.'.join(changed)} changed): "
            "drop those overrides, or start a new run"
        )
    check_trains(run_dir, state, cfg)
    cfg = with_saved_data_source(cfg, state.get("data_source"))
    with distributed(cfg.train.device) as dist:  # under another world size: see distributed.resume_step
        run = build_run(cfg, run_dir, checkpoint=state, dist=dist)
        dist.main_only(save_config, cfg, run_dir / CONFIG_NAME)
        dist.main_only(drop_metrics_after, run_dir, int(state["step"]))  # the checkpoint's own step numbering
        train(run)
    return run_dir


def with_saved_data_source(cfg: Config, source: Optional[str]) -> Config:
    """On resume, read the data from where the run found it when it is not found the usual way
    (e.g. $MAELAB_DATA_DIR was set for the first run but not for this one)."""
    if cfg.data.name not in ("cifar10", "props") or cfg.data.root is not None or not source or on_disk(cfg.data):
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=source))

