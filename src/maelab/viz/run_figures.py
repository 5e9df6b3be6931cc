"""The figures of one run, written as PNGs into ``RUN_DIR/figures/`` (several runs side by side: ``compare``)."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from matplotlib.figure import Figure

from maelab.atomic_output import make_folder, save_figure
from maelab.config import Config
from maelab.data import Dataset, steps_per_epoch
from maelab.data.normalize import Normalizer
from maelab.engine.loading import LoadedRun, load_run
from maelab.engine.metrics import read_metrics
from maelab.engine.numerics import non_finite_tensors
from maelab.errors import UserError
from maelab.masking import effective_ratio
from maelab.run_layout import RunLayout
from maelab.schedules import LRSchedule, mask_ratio_at
from maelab.viz.attention import attention_figure, cls_attention_maps
from maelab.viz.curves import curves_figure
from maelab.viz.plots import (
    lr_schedule_figure,
    mask_ratios_figure,
    mask_schedule_figure,
    masked_inputs_figure,
    reconstructions_figure,
)
from maelab.viz.probe_plots import write_probe_by_depth
from maelab.viz.samples import Samples, pick_samples, reconstruct, to_numpy

FIGURES_AGAIN = "run maelab figures again (the figures drawn before are kept)"
FIGURE_SEED = 0  # picks the sample images and draws their masks: the same for every run
DEFAULT_RATIOS = (0.25, 0.5, 0.75, 0.9)
MAX_SCHEDULE_POINTS = 20_000  # longer runs are drawn at every k-th step (each point still exact)
FIGURE_NAMES = ("masked_inputs.png", "reconstructions.png", "mask_ratios.png", "attention.png", "lr_schedule.png",
                "mask_schedule.png", "curves.png")


@dataclass
class Schedules:
    """The run's LR and mask-ratio schedules per step, computed by the functions training calls."""

    steps: list[int]
    lr: list[float]
    requested: list[float]  # mask_ratio_at
    effective: list[float]  # effective_ratio(num_patches, requested): what the encoder saw
    warmup_steps: int
    steps_per_epoch: int


def schedule_series(cfg: Config, num_train: int, num_patches: int, world_size: int = 1,
                    max_points: int = MAX_SCHEDULE_POINTS) -> Schedules:
    """The schedules of a run with ``num_train`` training images, as the training loop computes them."""
    spe = steps_per_epoch(num_train, cfg.optim.step_batch, world_size)
    lr_at = LRSchedule.for_pretraining(cfg.optim, spe, world_size)  # the object training used
    total = lr_at.total_steps
    stride = max(1, math.ceil(total / max_points))
    steps = list(range(0, total, stride))
    if steps[-1] != total - 1:
        steps.append(total - 1)
    lrs = [lr_at(s) for s in steps]
    requested = [mask_ratio_at(cfg.mask, s // spe, s, cfg.optim.epochs, spe, cfg.train.seed) for s in steps]
    effective = [effective_ratio(num_patches, r) for r in requested]
    return Schedules(steps, lrs, requested, effective, lr_at.warmup_steps, spe)


def logged_series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """``(step index, value)`` of ``key`` on step records: a record's ``step`` counts the steps done, so its
    values belong to step index ``step - 1``."""
    pts = [(int(r["step"]) - 1, float(r[key])) for r in records if r.get("kind") == "step" and key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def write_figures(run_dir: str | Path, checkpoint: Optional[str | Path] = None, out: Optional[str | Path] = None,
                  ratio: Optional[float] = None, ratios: Sequence[float] = DEFAULT_RATIOS, n_images: int = 10,
                  seed: int = FIGURE_SEED, overrides: Sequence[str] = ()) -> list[Path]:
    """Draw every figure of the run in ``run_dir`` into ``out`` (default ``RUN_DIR/figures``, or
    ``RUN_DIR/figures/epoch_0010`` for ``checkpoint="epoch:10"``, a kept checkpoint); returns the paths.

    ``ratio`` is the mask ratio of the masked-input and reconstruction figures (default: the run's mask.ratio);
    ``ratios`` are the rows of mask_ratios.png. ``overrides`` change the config for the image figures as they do for
    the evaluations (``data.name=folder data.root=DIR``: other images); the schedules and curves stay the run's.
    """
    ratio = None if ratio is None else _check_ratio(ratio)
    ratios = [_check_ratio(r, "--ratios") for r in ratios]
    run = load_run(run_dir, checkpoint=checkpoint, device="cpu", overrides=list(overrides))
    out_dir = _out_dir(run.run_dir, out, run.tag)
    data = run.dataset()
    head = f"{run.run_dir.name} (step {run.step})"
    samples = pick_samples(data, run.model.spec.img_size, n_images, seed)
    norm = Normalizer(data.mean, data.std)
    paths = _image_figures(run, samples, norm, _run_ratio(run.cfg) if ratio is None else ratio, ratios, seed,
                           head + _data_note(data, overrides), out_dir)
    paths += _schedule_figures(*_as_trained(run, data, checkpoint, overrides), head, out_dir)
    records = _records(run.run_dir)
    if records is not None:
        paths.append(_save(curves_figure(records, f"{head}: training curves"), out_dir / "curves.png"))
    by_depth = write_probe_by_depth(run.run_dir, out_dir, run.tag)  # when `maelab probe RUN probe.layers=all` has run
    return paths + ([by_depth] if by_depth is not None else [])


def _as_trained(run: LoadedRun, data: Dataset, checkpoint: Optional[str | Path], overrides: Sequence[str]
                ) -> tuple[LoadedRun, Optional[Dataset]]:
    """The run and its training data as trained (the schedules' steps per epoch): ``run`` itself without
    overrides; else the run loaded again without them, and None for the data when it is not found any more."""
    if not overrides:
        return run, data
    trained = load_run(run.run_dir, checkpoint=checkpoint, device="cpu")
    try:
        return trained, trained.dataset()
    except UserError as err:
        warnings.warn(f"no schedule figures: the data {run.run_dir} trained on is not found ({err})", stacklevel=3)
        return trained, None


def _data_note(data: Dataset, overrides: Sequence[str]) -> str:
    """A title's note naming the data when overrides (may) have changed it: ", on folder photos/"."""
    if not any(o.startswith("data.") for o in overrides):
        return ""
    return f", on {data.name}" + (f" {Path(data.source).name}/" if data.source else "")


def _image_figures(run: LoadedRun, samples: Samples, norm: Normalizer, ratio: float, ratios: Sequence[float],
                   seed: int, head: str, out_dir: Path) -> list[Path]:
    """masked_inputs.png, reconstructions.png, mask_ratios.png and attention.png of the fixed sample images."""
    rec = reconstruct(run.model, samples.original, norm, ratio, seed)
    text, note, broken = _ratio_text(rec.mask), _norm_pix_note(run), _non_finite_note(run)
    original, masked = to_numpy(rec.original), to_numpy(rec.masked)
    per_ratio = []
    for r in ratios:
        rr = reconstruct(run.model, samples.original, norm, r, seed)
        per_ratio.append((_ratio_text(rr.mask), to_numpy(rr.masked), to_numpy(rr.recon)))
    return [
        _save(masked_inputs_figure(original, masked, samples.names, text,
                                   f"{head}: {samples.split} images and their masks"), out_dir / "masked_inputs.png"),
        _save(reconstructions_figure(original, masked, to_numpy(rec.recon), samples.names, text,
                                     f"{head}: reconstructions{note}{broken}"), out_dir / "reconstructions.png"),
        _save(mask_ratios_figure(original, per_ratio, samples.names,
                                 f"{head}: the same images at several mask ratios{note}{broken}"),
              out_dir / "mask_ratios.png"),
        _save(attention_figure(samples.original, cls_attention_maps(run.model, samples.original, norm),
                               samples.columns, f"{head}: where the last block's cls token looks{broken}"),
              out_dir / "attention.png"),
    ]


def _schedule_figures(run: LoadedRun, data: Optional[Dataset], head: str, out_dir: Path) -> list[Path]:
    """lr_schedule.png and mask_schedule.png: the schedules training computed, with the logged values as dots."""
    if data is None:
        return []
    sched = schedule_series(run.cfg, len(data.x_train), run.model.spec.num_patches, run.world_size)
    records = _records(run.run_dir) or []
    lr_fig = lr_schedule_figure(sched.steps, sched.lr, warmup_steps=sched.warmup_steps,
                                steps_per_epoch=sched.steps_per_epoch, logged=logged_series(records, "lr"),
                                title=f"{head}: learning-rate schedule")
    mask_fig = mask_schedule_figure(sched.steps, sched.requested, sched.effective,
                                    steps_per_epoch=sched.steps_per_epoch,
                                    logged=logged_series(records, "mask_ratio"),
                                    title=f"{head}: mask-ratio schedule{_per_sample_note(run.cfg)}")
    return [_save(lr_fig, out_dir / "lr_schedule.png"), _save(mask_fig, out_dir / "mask_schedule.png")]


def _records(run_dir: Path) -> Optional[list[dict[str, Any]]]:
    if not RunLayout(run_dir).metrics.is_file():
        warnings.warn(f"{run_dir} has no metrics.jsonl: no curves, and no logged points on the schedules",
                      stacklevel=3)
        return None
    try:
        return read_metrics(run_dir)
    except json.JSONDecodeError as err:
        raise UserError(f"{run_dir / 'metrics.jsonl'} line {err.lineno} is not JSON: repair or remove that line") \
            from None


def _run_ratio(cfg: Config) -> float:
    return float(getattr(cfg.mask, "ratio", 0.75))


def _check_ratio(ratio: float, option: str = "--ratio") -> float:
    if not 0.0 <= ratio <= 1.0:
        example = "--ratios 0.25,0.5,0.75" if option == "--ratios" else "--ratio 0.75"
        raise UserError(f"mask ratio {ratio} is outside [0, 1] ({option}): give e.g. {example}")
    return float(ratio)


def _ratio_text(mask: Any) -> str:
    """'75% (48/64)': the share of patches masked, as the encoder saw it."""
    masked, total = int(mask[0].sum()), int(mask.shape[1])
    return f"{masked / total:.0%} ({masked}/{total})"


def _norm_pix_note(*runs: LoadedRun) -> str:
    if any(r.cfg.model.norm_pix_loss for r in runs):
        return "\n(norm_pix: predicted patches de-normalised with each target patch's own mean and std)"
    return ""


def _non_finite_note(run: LoadedRun) -> str:
    """A title's note when the checkpoint holds NaN/inf weights: what the model draws is not finite (blank), and
    why, instead of an empty panel that looks like a bad image."""
    bad = non_finite_tensors(run.model.state_dict())
    if not bad:
        return ""
    return (f"\n(the checkpoint holds NaN/inf weights ({', '.join(bad[:2])}{' ...' if len(bad) > 2 else ''}): its "
            "output is not finite and is drawn blank)")


def _per_sample_note(cfg: Config) -> str:
    if getattr(cfg.mask, "per_sample", False):
        return f"\n(per sample: each image's ratio is uniform in [{cfg.mask.min}, {cfg.mask.max}]; the mean is drawn)"
    return ""


def _out_dir(run_dir: Path, out: Optional[str | Path], tag: Optional[str] = None) -> Path:
    path = Path(out) if out is not None else RunLayout(run_dir).figures_of(tag)
    return make_folder(path, "figures folder", f"{FIGURES_AGAIN} (or give a writable --out)")


def _save(fig: Figure, path: Path) -> Path:
    """The PNG written atomically; a full or read-only disk is one OutputError line, no empty PNG left."""
    return save_figure(fig, path, FIGURES_AGAIN)
