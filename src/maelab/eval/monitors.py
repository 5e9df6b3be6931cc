"""Monitors that pretraining calls after its epochs (``maelab.engine.pretrain.EpochHook``): the k-NN top-1 of the
encoder as it trains (``eval.knn_every``, on the run's data or on the labelled data of ``eval.knn_data``) and
reconstructions of fixed images (``train.log_images_every``). The engine imports no evaluation code: callers pass
``monitors=epoch_hooks`` to ``pretrain`` / ``resume``."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from maelab.config import Config, DataConfig
from maelab.data import Dataset, load_dataset, require_labels
from maelab.data.roots import check_root
from maelab.engine.distributed import is_main_process
from maelab.engine.pretrain import EpochHook
from maelab.engine.run import Run
from maelab.errors import DataError
from maelab.eval.data_tag import data_record, data_tag
from maelab.eval.knn import encoder_knn_top1


@dataclass
class KnnMonitor:
    """k-NN top-1 (%) of the encoder every ``every`` epochs, logged as knn_top1 with the data it measured
    (``knn_data``: :func:`maelab.eval.data_tag.data_record`). ``data``: the monitor's own data section
    (:func:`knn_monitor_data`) and ``loaded`` its images, when they are not the run's (None: the run's train/test
    sets). They are normalised by their own channel statistics, as ``maelab knn RUN data.root=DIR`` does, so the
    curve's last point is that command's number on the last checkpoint."""

    every: int
    data: Optional[DataConfig] = None
    loaded: Optional[Dataset] = field(default=None, compare=False, repr=False)
    setting: str = "eval.knn_every"

    def __call__(self, run: Run, epoch: int) -> dict[str, Any]:
        if (epoch + 1) % self.every:
            return {}
        if self.loaded is not None:  # moved once to where the features are (memory-mapped images stay on the CPU)
            self.loaded = self.loaded.to(run.device)
        data = run.data if self.loaded is None else self.loaded
        was_training = run.model.training
        top1 = encoder_knn_top1(run.model.encoder, data, run.model.spec.img_size, run.cfg.knn,
                                run.cfg.eval.batch_size)
        run.model.train(was_training)
        used = self.data or run.cfg.data
        return {"knn_top1": top1, "knn_data": data_record(data, used, data_tag(run.cfg.data, used))}


def knn_monitor_data(cfg: Config) -> DataConfig:
    """The data section the k-NN monitor reads: ``data`` with ``eval.knn_data`` laid over it. Other data (a name or
    a root set; a root alone is a folder) keeps of ``data`` only how images are read (image_size, cache_dir,
    download, max_memory_gib; url and md5 for the same source); the run's own data keeps its limits unless
    eval.knn_data.limit_* replace them."""
    k = cfg.eval.knn_data
    if not k.other:
        return replace(cfg.data, limit_train=cfg.data.limit_train if k.limit_train is None else k.limit_train,
                       limit_test=cfg.data.limit_test if k.limit_test is None else k.limit_test)
    name = k.name or "folder"
    same = name == cfg.data.name
    return replace(cfg.data, name=name, root=k.root, limit_train=k.limit_train, limit_test=k.limit_test,
                   url=cfg.data.url if same else None, md5=cfg.data.md5 if same else None)


def monitor_error(err: DataError) -> DataError:
    """``err`` about the monitor's data, its ``data.*`` keys named as the settings the user gave
    (``eval.knn_data.root=DIR has no train/<class>/ ...``)."""
    text = re.sub(r"\bdata\.(name|root|limit_train|limit_test)\b", r"eval.knn_data.\1", str(err))
    return type(err)(text)


def knn_monitor(cfg: Config) -> KnnMonitor:
    """The k-NN monitor of ``cfg``, refused (a ``DataError`` in one line, before anything is written) on data
    without labels: an unlabeled pretraining folder without eval.knn_data, or an unlabeled eval.knn_data folder.
    Data other than the run's is loaded here, in the process that runs the monitor (rank 0 under torchrun), so
    that a bad file stops the run before its first step rather than after an epoch."""
    what = f"the k-NN monitor (eval.knn_every={cfg.eval.knn_every})"
    data_cfg = knn_monitor_data(cfg)
    if not cfg.eval.knn_data.other:
        require_labels(cfg.data, what, "set eval.knn_data.root=DIR to measure on a labelled folder while "
                                       "pretraining on this one, or eval.knn_every=0 to pretrain without it")
    try:
        if cfg.eval.knn_data.other:
            require_labels(data_cfg, what, "set eval.knn_every=0 to pretrain without it")
            check_root(data_cfg)
        if data_cfg == cfg.data:  # the run's own images: no second copy
            return KnnMonitor(cfg.eval.knn_every)
        loaded = load_dataset(data_cfg, cfg.train.seed, progress=cfg.train.progress) if is_main_process() else None
    except DataError as err:
        raise monitor_error(err) from None
    if loaded is not None:
        print(f"maelab: the k-NN monitor measures on {loaded.name} {loaded.source or ''} (eval.knn_data): "
              f"{len(loaded.x_train)} training images as the bank, {len(loaded.x_test)} test images as queries, "
              f"{loaded.num_classes} classes", file=sys.stderr, flush=True)
    return KnnMonitor(cfg.eval.knn_every, data_cfg, loaded)


def epoch_hooks(cfg: Config) -> Sequence[EpochHook]:
    """The monitors ``cfg`` asks for: the k-NN monitor when eval.knn_every > 0 (:func:`knn_monitor`), the
    reconstruction images when train.log_images_every > 0."""
    hooks: list[EpochHook] = [knn_monitor(cfg)] if cfg.eval.knn_every else []
    if cfg.train.log_images_every:
        from maelab.viz.image_monitor import ReconstructionImages  # matplotlib: 1.2 s of every pretrain's start

        hooks.append(ReconstructionImages(cfg.train.log_images_every))
    return hooks


__all__ = ["KnnMonitor", "epoch_hooks", "knn_monitor", "knn_monitor_data"]
