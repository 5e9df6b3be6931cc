"""MAE pretraining: the epoch loop, checkpoints and metrics around :func:`maelab.engine.step.train_step`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Optional, Protocol

from torch import Tensor

from maelab.config import Config, load_config, save_config, to_dict
from maelab.data import epoch_batches
from maelab.engine.banner import announce
from maelab.engine.checkpoint import TRAINING_KEYS, checkpoint_path, load_checkpoint, save_checkpoint
from maelab.engine.checkpoint_cadence import CheckpointCadence
from maelab.engine.checkpoint_writer import CheckpointWriter, write_checkpoints
from maelab.engine.compile_cache import CompileCache
from maelab.engine.distributed import distributed
from maelab.engine.epoch_stats import EpochStats, host_floats
from maelab.engine.kept import keeps_epoch
from maelab.engine.loading import with_saved_data_source
from maelab.engine.log_sinks import check_sinks, open_sinks
from maelab.engine.metrics import MetricsLogger, NullLogger, drop_metrics_after
from maelab.engine.numerics import NonFiniteLossError
from maelab.engine.resume_checks import check_trains, schedule_change_note
from maelab.engine.run import Run, build_run, checkpoint_state, start_notes
from maelab.engine.run_dir import check_run_dir, prepare_run_dir
from maelab.engine.run_lock import run_lock
from maelab.engine.signals import RunInterrupted, StopRequest, catch_stop_signals
from maelab.engine.step import StepStreams, train_step
from maelab.errors import ConfigError, UserError
from maelab.interop.init_from import with_init_from
from maelab.progress import Progress
from maelab.run_layout import RunLayout
from maelab.undefined import set_undefined

StepFn = Callable[..., Tensor]  # (run, uint8 batch, lr, ratio, generators, logs) -> loss: train_step's signature
ALL_SKIPPED = "no step of the epoch ended with a finite loss (each was skipped, train.on_nan=skip): no loss to average"


def run_epoch(run: Run, epoch: int, logger: MetricsLogger, bar: Optional[Progress],
              stop: Optional[StopRequest] = None, step_fn: StepFn = train_step) -> Optional[dict[str, float]]:
    """Train the remaining steps of ``epoch``; returns the epoch's metrics, or None when ``stop`` was requested
    before its last step (the run is then between two steps, ready for a checkpoint). ``step_fn``: the eager step,
    or the compiled one (:func:`step_function`). The host syncs at log steps (every step on the CPU) and once at
    the epoch's end."""
    cfg = run.cfg
    batches = epoch_batches(len(run.data.x_train), run.rank_batch, cfg.train.seed, epoch, run.dist.rank,
                            run.dist.world_size, run.data.x_train.device)
    start_index = run.step - epoch * run.steps_per_epoch
    stats = EpochStats(run.device, run.steps_per_epoch, start_index, epoch * run.steps_per_epoch)
    streams = StepStreams(cfg.train.seed, run.device)
    t_epoch = t_log = time.perf_counter()
    images_since_log = 0
    lr = seen = ratio_sum = 0.0  # ratio_sum: the ratios the encoder saw, for the epoch's mean
    for index in range(start_index, run.steps_per_epoch):
        lr, ratio = run.lr_schedule(run.step), run.mask_ratio(epoch, run.step)
        seen = ratio.effective  # what the encoder sees (per-sample: the batch's mean)
        ratio_sum += seen
        logs: dict[str, Tensor] = {}  # the add-ons' device-side logs (empty while none is active)
        generators = streams.at(run.step)
        batch = run.data.x_train[batches[index]].to(run.device, non_blocking=True)  # a no-op unless memory-mapped
        stats.add(index, step_fn(run, batch, lr, ratio, generators, logs))
        stats.add_logs(logs)
        run.step += 1
        images_since_log += run.global_batch
        logging = run.step % cfg.train.log_every == 0
        if logging or run.device.type == "cpu":
            read_and_check(run, stats, index + 1)
        if logging:
            now = time.perf_counter()
            record = {"epoch": epoch, "step": run.step, "loss": stats.values[-1], "lr": lr,
                      "mask_ratio": seen, "img_per_s": images_since_log / max(now - t_log, 1e-9),
                      **host_floats(logs), **run.nan.log_fields()}
            for addon in run.addons:  # e.g. the GAN's collapse watch
                record.update(addon.on_log(record))
            logger.log("step", record)
            t_log, images_since_log = now, 0
            show(bar, record["loss"], lr, seen, record["img_per_s"])
        if bar is not None:
            bar.update(1)
        if stop is not None and stop.requested and index < run.steps_per_epoch - 1:
            read_and_check(run, stats, index + 1)
            return None
    first = stats.unread_step
    losses, log_means, flags = stats.finish(run.steps_per_epoch, run.nan.flags())  # the epoch's one host sync
    run.nan.check(losses, first, flags)
    seconds = time.perf_counter() - t_epoch
    steps_done = run.steps_per_epoch - start_index
    record = {"epoch": epoch, "step": run.step, "loss": stats.mean_loss(),
              "lr": lr, "mask_ratio": ratio_sum / max(steps_done, 1),  # the mean over the epoch's steps
              "img_per_s": steps_done * run.global_batch / max(seconds, 1e-9), "seconds": seconds,
              **log_means, **run.nan.epoch_fields()}
    if record["loss"] is None:
        set_undefined(record, "loss", ALL_SKIPPED)
    if stats.values:  # the bar's figures at the epoch's end are its last step's, not those of the last log step
        show(bar, stats.values[-1], lr, seen, record["img_per_s"])
    return record


def show(bar: Optional[Progress], loss: float, lr: float, ratio: float, img_per_s: float) -> None:
    """The figures after the progress count: a step's loss, lr and mask ratio, and img/s (None: no bar)."""
    if bar is not None:
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", ratio=f"{ratio:.2f}", img_s=f"{img_per_s:.0f}")


def read_and_check(run: Run, stats: EpochStats, upto: int) -> None:
    """Host sync: read the epoch's new losses below slot ``upto`` and apply ``train.on_nan`` to them (stop: raise
    at the first non-finite one; skip: at too many skipped steps in a row)."""
    first = stats.unread_step
    losses, flags = stats.read(upto, run.nan.flags())  # one transfer: the losses and the policy's flags
    run.nan.check(losses, first, flags)


class EpochHook(Protocol):
    """Called after each epoch on the main rank (the model as it is then); returns fields added to that epoch's
    metrics record. ``setting``: the config key that asks for it (``eval.knn_every`` for maelab's k-NN monitor,
    :mod:`maelab.eval.monitors`)."""

    setting: str

    def __call__(self, run: Run, epoch: int) -> dict[str, Any]: ...


Monitors = Callable[[Config], Sequence[EpochHook]]  # the hooks a config asks for (maelab.eval.monitors.epoch_hooks)


def no_monitors(cfg: Config) -> Sequence[EpochHook]:
    return ()


def hooks_for(cfg: Config, monitors: Monitors) -> Sequence[EpochHook]:
    """``monitors(cfg)``; a config that asks for a monitor none of them provides is refused (no silent no-op)."""
    hooks = monitors(cfg)
    provided = {h.setting for h in hooks}
    for setting, value, what in (("eval.knn_every", cfg.eval.knn_every, "the k-NN monitor"),
                                 ("train.log_images_every", cfg.train.log_images_every, "the reconstruction images")):
        if value and setting not in provided:
            raise UserError(f"{setting}={value} asks for {what}, which this caller does not provide: run `maelab "
                            "pretrain`, or pass monitors=maelab.eval.monitors.epoch_hooks")
    check_sinks(cfg)
    return hooks


def checkpoint_due(cadence: CheckpointCadence, writer: CheckpointWriter, epochs_done: int, stopping: bool,
                   kept: bool) -> bool:
    """Whether the loop writes a checkpoint after ``epochs_done`` epochs (``cadence``: on rank 0, whose clock
    decides for all; ``kept``: this epoch's checkpoint is kept); first raises the error of a background write that
    failed, so that it stops the run now. One only the cadence asks for is deferred while a write is running."""
    writer.raise_failed()
    return cadence.due(epochs_done, stopping, must=kept, busy=writer.busy())


def step_function(run: Run) -> StepFn:
    """The step the run trains with, chosen once: :func:`train_step`, or where the run's compile plan says so
    (``train.compile_scope=step``; on CUDA the default) the whole step compiled
    (:class:`maelab.engine.compiled_step.CompiledStep`)."""
    if run.compile.scope == "step":
        # imported here: torch._dynamo (and with it inductor) costs 1.4 s to import, and a SIGTERM to one torchrun
        # rank then hung the other in 2 of 5 tries (tests/engine/test_distributed.py); eager runs never load it
        from maelab.engine.compiled_step import CompiledStep

        return CompiledStep(run)
    return train_step


def train(run: Run, hooks: Sequence[EpochHook] = ()) -> None:
    """The epoch loop from the run's current step to the end (or to train.stop_after_epochs); ``hooks`` add their
    fields to each epoch's record (on the main rank)."""
    cfg = run.cfg
    last_epoch = cfg.optim.epochs
    if cfg.train.stop_after_epochs is not None:
        last_epoch = min(last_epoch, cfg.train.stop_after_epochs)
    main = run.dist.is_main  # only rank 0 writes files and shows progress
    cache = CompileCache(cfg.train.compile_cache, main)
    step_fn = cache.wrap(step_function(run))
    logger = MetricsLogger(run.run_dir, open_sinks(run.run_dir, cfg)) if main else NullLogger()
    bar = None
    if cfg.train.progress and main:
        # a bar on a terminal; under nohup or SLURM a plain line every 30 s instead of redraws (maelab.progress)
        bar = Progress(last_epoch * run.steps_per_epoch, "pretrain",
                       initial=min(run.step, last_epoch * run.steps_per_epoch))
    cadence = CheckpointCadence(cfg.train.save_every, cfg.train.save_every_seconds, last_epoch)
    try:
        with catch_stop_signals() as local_stop, CheckpointWriter() as writer:  # leaving it waits for the write
            stop = run.dist.synced(local_stop)  # every rank stops at the same step
            for epoch in range(run.step // run.steps_per_epoch, last_epoch):
                record = run_epoch(run, epoch, logger, bar, stop, step_fn)
                if record is not None:
                    for hook in hooks if main else ():
                        record.update(hook(run, epoch))
                    logger.log("epoch", record)
                kept = record is not None and keeps_epoch(epoch + 1, cfg.optim.epochs, cfg.train.save_every,
                                                          cfg.train.keep_checkpoints)
                if run.dist.main_only(checkpoint_due, cadence, writer, epoch + 1, stop.requested, kept):
                    run.nan.check_weights(run)  # every rank: non-finite weights are never written
                    run.dist.main_only(write_checkpoints, writer, run, epoch + 1 if kept else None)
                if stop.requested and run.step < last_epoch * run.steps_per_epoch:
                    break
            cache.save()  # builds met after the first step (main rank)
            run.dist.main_only(writer.wait)  # the last checkpoint is on disk, or its error raised on every rank
            if run.step < last_epoch * run.steps_per_epoch:  # stopped by a signal
                raise RunInterrupted(run.run_dir, run.step, stop.signum)
    except NonFiniteLossError as err:  # the write in flight has ended: say which checkpoint is kept, or that none is
        raise (err.kept_in(run.run_dir) if main else err) from None
    finally:
        if bar is not None:
            bar.close()
        logger.close()


def pretrain(cfg: Config, monitors: Monitors = no_monitors) -> Path:
    """Start a new pretraining run (on every rank under torchrun); returns its run directory. ``monitors``: the
    epoch hooks the config asks for (:func:`maelab.eval.monitors.epoch_hooks`: the k-NN monitor)."""
    hooks = hooks_for(cfg, monitors)
    cfg = with_init_from(cfg)  # model.init_from: the folder's architecture, written into the run's config
    with distributed(cfg.train.device) as dist, ExitStack() as hold:
        run_dir = dist.main_only(check_run_dir, cfg.out_dir, cfg.name, cfg.overwrite)
        hold.enter_context(run_lock(run_dir, dist))  # refused while another process trains it; held to the end
        run = build_run(cfg, run_dir, dist=dist)  # data and model first: a mistake found here changes no file
        dist.main_only(print_notes, run)
        dist.main_only(prepare_run_dir, str(run_dir), cfg.name, cfg.overwrite)
        dist.main_only(save_config, cfg, RunLayout(run_dir).config)
        dist.main_only(announce, run)
        train(run, hooks)
    return run_dir


_said: Optional[set[str]] = None  # inside notes_said_once(): the notes printed so far


@contextmanager
def notes_said_once() -> Iterator[None]:
    """Within this block each start note is printed once: a suite's ten runs that are all too short for their lr
    schedule get one warning, not ten (``maelab ablate`` runs its runs inside one)."""
    global _said
    outer, _said = _said, set() if _said is None else _said
    try:
        yield
    finally:
        _said = outer


def print_notes(run: Run) -> None:
    """The run's start notes (:func:`maelab.engine.run.start_notes`), one line each on stderr (inside
    :func:`notes_said_once`, a note already printed there is not printed again)."""
    for note in start_notes(run):
        if _said is not None:
            if note in _said:
                continue
            _said.add(note)
        print(f"maelab: {note}", file=sys.stderr, flush=True)


def import_weights(cfg: Config) -> Path:
    """A run directory at step 0 holding the weights of ``model.init_from`` (an HF ViTMAE/ViT folder), untrained:
    every command that takes a RUN_DIR then works on them (probe, knn, recon, finetune, figures, export, and
    ``pretrain --resume`` to train on for optim.epochs). Returns the run directory."""
    if not cfg.model.init_from:
        raise UserError("maelab import needs the HF folder to import: give its path (it becomes model.init_from)")
    cfg = with_init_from(cfg)
    run_dir = check_run_dir(cfg.out_dir, cfg.name, cfg.overwrite)
    run = build_run(cfg, run_dir)
    prepare_run_dir(str(run_dir), cfg.name, cfg.overwrite)
    save_config(cfg, RunLayout(run_dir).config)
    save_checkpoint(checkpoint_state(run), checkpoint_path(run_dir))
    return run_dir


def resume(run_dir: str | Path, overrides: list[str], monitors: Monitors = no_monitors) -> Path:
    """Continue the run in ``run_dir`` from its last checkpoint; ``overrides`` may extend it (optim.epochs=...);
    ``monitors`` as :func:`pretrain`'s."""
    run_dir = Path(run_dir)
    moved = [o for o in overrides if o.split("=", 1)[0].strip() == "out_dir"]
    if moved:
        raise UserError(f"{moved[0]}: --resume continues {run_dir} in its own folder: drop out_dir (to continue the "
                        "run elsewhere, copy the folder there and resume the copy)")
    state = load_checkpoint(checkpoint_path(run_dir), needs=TRAINING_KEYS)
    saved = {**state["config"], "train": {**state["config"]["train"], "stop_after_epochs": None}}  # older runs kept it
    try:
        cfg = load_config(None, [*overrides, f"out_dir={run_dir}"], base=saved)
    except ConfigError as err:  # fewer epochs than trained also put a late GAN's start past the end: name that first
        try:
            without_gan = load_config(None, [*overrides, "gan.enabled=false"], base=saved)
        except ConfigError:
            raise err from None
        check_trains(run_dir, state, without_gan)
        raise
    saved_model = state["config"]["model"]
    if to_dict(cfg)["model"] != saved_model:
        changed = sorted(k for k, v in to_dict(cfg)["model"].items() if saved_model.get(k) != v)
        raise UserError(
            f"cannot resume {run_dir} with a different model config (model.{', model.'.join(changed)} changed): "
            "drop those overrides, or start a new run"
        )
    check_trains(run_dir, state, cfg)
    cfg = with_saved_data_source(cfg, state.get("data_source"), state["config"]["data"].get("root"))
    hooks = hooks_for(cfg, monitors)
    # under another world size: see distributed.resume_step; the lock: refused while another process trains it
    with distributed(cfg.train.device) as dist, run_lock(run_dir, dist, step=int(state["step"])):
        run = build_run(cfg, run_dir, checkpoint=state, dist=dist)
        dist.main_only(print_notes, run)
        dist.main_only(save_config, cfg, RunLayout(run_dir).config)
        dist.main_only(announce, run, state.get("threads"))
        changed = schedule_change_note(state, cfg, run.steps_per_epoch, dist.world_size)
        if changed:
            dist.main_only(print, f"maelab: {changed}", file=sys.stderr, flush=True)
        dist.main_only(drop_metrics_after, run_dir, int(state["step"]))  # the checkpoint's own step numbering
        train(run, hooks)
    return run_dir
