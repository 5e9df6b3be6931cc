"""Reconstructions of fixed test images during pretraining (``train.log_images_every``): an epoch hook whose
image the metrics sinks draw (TensorBoard, W&B)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from maelab.data.normalize import Normalizer
from maelab.engine.log_sinks import LoggedImage
from maelab.engine.run import Run
from maelab.viz.plots import mosaic
from maelab.viz.run_figures import FIGURE_SEED
from maelab.viz.samples import pick_samples, reconstruct, to_numpy

IMAGES = 8


@dataclass(frozen=True)
class ReconstructionImages:
    """Every ``every`` epochs, ``reconstructions``: the fixed sample images of ``maelab figures`` (seeded, class-
    balanced test images), masked at the run's mask.ratio and reconstructed, as one [3 rows, 8 images] mosaic
    (original, masked, reconstructed). Draws from its own seeded generators only: training's random streams and
    so the run's results are unchanged."""

    every: int
    setting: str = "train.log_images_every"

    def __call__(self, run: Run, epoch: int) -> dict[str, Any]:
        if (epoch + 1) % self.every:
            return {}
        data = run.data
        samples = pick_samples(data, run.model.spec.img_size, IMAGES, FIGURE_SEED)
        was_training = run.model.training
        run.model.eval()
        rec = reconstruct(run.model, samples.original, Normalizer(data.mean, data.std, run.device),
                          float(getattr(run.cfg.mask, "ratio", 0.75)), FIGURE_SEED, run.device)
        run.model.train(was_training)
        rows = [to_numpy(rec.original), to_numpy(rec.masked), to_numpy(rec.recon)]
        return {"reconstructions": LoggedImage(mosaic(rows))}


__all__ = ["ReconstructionImages"]
