"""Open a finished (or running) pretraining run: its config, its model from a checkpoint, its data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import torch

from maelab.config import Config, DataConfig, load_config
from maelab.data import Dataset, load_dataset, on_disk
from maelab.engine.checkpoint import load_checkpoint
from maelab.engine.device import configure_backends, resolve_device, resolve_precision
from maelab.engine.distributed import is_main_process
from maelab.engine.kept import resolve_checkpoint
from maelab.errors import UserError
from maelab.models import MAE, build_mae, resolve_spec
from maelab.models.cpu import kernels_for, use_kernels
from maelab.models.cpu.choice import encoder_workload
from maelab.run_layout import RunLayout
from maelab.state_fit import changed_settings, load_fitting


@dataclass
class LoadedRun:
    """A pretraining run opened for evaluation or figures."""

    run_dir: Path
    cfg: Config
    model: MAE  # in eval mode, on ``device``
    checkpoint: Optional[Path]  # None for --random-init
    step: int  # the checkpoint's training step (0 for random init)
    device: torch.device
    data_source: Optional[str] = None
    world_size: int = 1  # the ranks the checkpoint was trained with (its steps are global batches of that many)
    # None for last.pt (and random init); else what results made from this checkpoint are tagged with, so that
    # they land beside last.pt's: "epoch_0010" (eval/probe@epoch_0010.json, figures/epoch_0010/)
    tag: Optional[str] = None
    # the ``data`` section the checkpoint was trained with (``cfg.data`` is after this use's overrides): what tells a
    # result on the run's own data from one on other data (maelab.eval.data_tag)
    trained_data: Optional[DataConfig] = None

    def dataset(self, seed: Optional[int] = None) -> Dataset:
        """The run's dataset (same name, limits and seed as in pretraining), on the run's device."""
        return load_dataset(self.cfg.data, self.cfg.train.seed if seed is None else seed,  # progress: rank 0's
                            progress=self.cfg.train.progress and is_main_process()).to(self.device)


def changed_model_settings(saved: Config, now: Config) -> list[str]:
    """``model.key saved -> now`` for every resolved architecture field and loss setting that differs, except
    ``img_size`` (weights carry over to another image size)."""
    def settings(cfg: Config) -> dict:
        return {**asdict(resolve_spec(cfg.model)), "norm_pix_loss": cfg.model.norm_pix_loss, "loss": cfg.model.loss}

    changed = changed_settings(settings(saved), settings(now), "model")
    return [c for c in changed if not c.startswith("model.img_size ")]


def load_run(run_dir: str | Path, checkpoint: Optional[str | Path] = None, device: str = "auto",
             random_init: bool = False, overrides: Optional[list[str]] = None) -> LoadedRun:
    """Open ``run_dir``: the config from its last checkpoint (or ``checkpoint``: a file, or ``epoch:N`` for the
    checkpoint kept after N epochs), the MAE with its weights.

    ``random_init`` builds the same architecture with fresh weights (seeded by train.seed): the floor.
    ``overrides`` change the run's config for this use only (e.g. ``data.limit_test=1000``).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist: give the out_dir of a pretraining run")
    path = resolve_checkpoint(run_dir, checkpoint)
    state = load_checkpoint(path, needs=("model", "config", "step"))
    cfg = load_config(None, overrides or [], base=state["config"])
    if cfg.train.threads:  # as in pretraining: `maelab probe RUN train.threads=1` runs on one CPU thread
        torch.set_num_threads(cfg.train.threads)
    dev = resolve_device(device)
    configure_backends(dev, cfg.train.tf32, cfg.train.deterministic)  # TF32 for the probe's and k-NN's matmuls
    torch.manual_seed(cfg.train.seed)
    spec = resolve_spec(cfg.model)
    model = use_kernels(build_mae(spec, cfg.model.norm_pix_loss, cfg.model.loss),  # evaluations: no backward
                        kernels_for(dev, resolve_precision(cfg.train.precision, dev),
                                    encoder_workload(spec, cfg.eval.batch_size, training=False)))
    saved = load_config(None, [], base=state["config"])
    found = with_saved_data_source(cfg, state.get("data_source"), saved.data.root)
    if found is not cfg:  # the run's own data, from where it was found: still the run's own (data_tag)
        cfg, saved = found, replace(saved, data=replace(saved.data, root=found.data.root))
    if not random_init:
        changed = changed_model_settings(saved, cfg)
        what = f"the MAE saved in {path}"
        if changed:
            raise UserError(f"{what} was trained with other model settings ({', '.join(changed)}): an evaluation "
                            "uses the network as it was trained; drop those model.* overrides (only model.img_size "
                            "may change: the sin-cos positions are rebuilt), or pretrain a new run with them")
        load_fitting(model, state["model"], what, [], "Its weights do not match its own config: use another run")
    model.to(dev).eval()
    return LoadedRun(run_dir=run_dir, cfg=cfg, model=model, checkpoint=None if random_init else path,
                     step=0 if random_init else int(state["step"]), device=dev,
                     data_source=state.get("data_source"), world_size=int(state.get("world_size", 1)),
                     tag=None if random_init else RunLayout(run_dir).checkpoint_tag(path), trained_data=saved.data)


def with_saved_data_source(cfg: Config, source: Optional[str], trained_root: Optional[str]) -> Config:
    """Read the data from where the run found it (``source``, absolute, kept in its checkpoints) when the run's own
    data is not found the usual way: CIFAR-10 or PROPS found through $MAELAB_DATA_DIR by the first run but not set
    for this one, or a relative data.root (as typed, e.g. ``my_images``) opened from another folder than the one the
    run started in. ``trained_root`` is the data.root the run trained with: a data.root changed for this use
    (``maelab eval RUN data.root=other``) is never replaced."""
    if not source or cfg.data.root != trained_root:
        return cfg
    if cfg.data.root is None:
        if cfg.data.name not in ("cifar10", "props") or on_disk(cfg.data):
            return cfg
    elif Path(cfg.data.root).expanduser().is_absolute() or Path(cfg.data.root).expanduser().exists():
        return cfg
    elif not Path(source).is_dir():
        return cfg
    return replace(cfg, data=replace(cfg.data, root=source))
