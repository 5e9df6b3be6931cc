"""Monitors that pretraining calls after its epochs (``maelab.engine.pretrain.EpochHook``): the k-NN top-1 of the
encoder as it trains (``eval.knn_every``) and reconstructions of fixed images (``train.log_images_every``).
The engine imports no evaluation code: callers pass
``monitors=epoch_hooks`` to ``pretrain`` / ``resume``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from maelab.config import Config
from maelab.data import require_labels
from maelab.engine.pretrain import EpochHook
from maelab.engine.run import Run
from maelab.eval.knn import encoder_knn_top1
from maelab.viz.image_monitor import ReconstructionImages


@dataclass(frozen=True)
class KnnMonitor:
    """k-NN top-1 (%) of the encoder every ``every`` epochs (the run's train/test sets), logged as knn_top1."""

    every: int
    setting: str = "eval.knn_every"

    def __call__(self, run: Run, epoch: int) -> dict[str, Any]:
        if (epoch + 1) % self.every:
            return {}
        was_training = run.model.training
        top1 = encoder_knn_top1(run.model.encoder, run.data, run.model.spec.img_size, run.cfg.knn,
                                run.cfg.eval.batch_size)
        run.model.train(was_training)
        return {"knn_top1": top1}


def epoch_hooks(cfg: Config) -> Sequence[EpochHook]:
    """The monitors ``cfg`` asks for: the k-NN monitor when eval.knn_every > 0 (refused, before anything is
    written, on an unlabeled image folder: a ``DataError``), the reconstruction images when
    train.log_images_every > 0."""
    if cfg.eval.knn_every:
        require_labels(cfg.data, f"the k-NN monitor (eval.knn_every={cfg.eval.knn_every})",
                       "set eval.knn_every=0 to pretrain without it")
    hooks: list[EpochHook] = [KnnMonitor(cfg.eval.knn_every)] if cfg.eval.knn_every else []
    if cfg.train.log_images_every:
        hooks.append(ReconstructionImages(cfg.train.log_images_every))
    return hooks


__all__ = ["KnnMonitor", "epoch_hooks"]
