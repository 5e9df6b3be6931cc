"""One pretraining step: augment and normalise, mask, forward, objective (+ the add-ons' terms), optimizer step,
the add-ons' after-step (the GAN's discriminator step).

Every random number of a step comes from two generators seeded by (seed, step): augmentation and masks apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from maelab.data import augment
from maelab.engine.addons import StepOutput, all_frozen
from maelab.engine.device import autocast
from maelab.engine.run import Run
from maelab.masking import draw_mask
from maelab.seeds import torch_generator


@dataclass(frozen=True)
class StepGenerators:
    """One step's two random streams, augmentation and masks, each seeded from (seed, step).

    Apart so that a variant that changes one leaves the other's draws as they were: in an ablation, seed k's
    variants with more augmentation ops still mask the same patches as the baseline (common random numbers, the
    reason the report can pair seeds)."""

    augment: torch.Generator
    mask: torch.Generator


def step_generators(seed: int, step: int, device: torch.device | str = "cpu") -> StepGenerators:
    """The two generators of step ``step`` (streams "augment" and "mask" of :mod:`maelab.seeds`)."""
    return StepGenerators(torch_generator(seed, "augment", step, device=device),
                          torch_generator(seed, "mask", step, device=device))


def train_step(run: Run, imgs_u8: Tensor, lr: float, ratio: float | Tensor, generators: StepGenerators,
               logs: Optional[dict[str, Tensor]] = None) -> Tensor:
    """One optimizer step on a uint8 batch [B, H, W, 3]; returns the reconstruction loss as a device tensor
    (no host sync). Under torchrun the batch is this rank's shard, ``ratio`` (per-sample: [world_size x B]) is
    the global batch's, and the loss and logs returned are the means over the ranks.

    Add-ons (:mod:`maelab.engine.addons`; the GAN from gan.start_epoch) add their terms to the objective with
    their own parameters frozen, and act after the MAE's step (the GAN: one discriminator step); their logs
    (detached device tensors) are written into ``logs`` when it is given.
    """
    shard = run.dist.shard  # this rank's rows of the step's random draws (all of them in one process)
    imgs = augment(imgs_u8, run.cfg.aug, run.model.spec.img_size, generators.augment, shard)
    imgs = run.normalize(imgs)
    if isinstance(ratio, Tensor):  # per-sample ratios come for the global batch
        ratio = shard.rows(ratio)
    mask = draw_mask(len(imgs), run.model.spec.num_patches, ratio, imgs.device, generators.mask, shard)
    addons = run.active_addons()
    with all_frozen(addons):
        with autocast(run.device, run.precision):
            loss, pred = run.forward(imgs, mask)
            out = StepOutput(run.model, imgs, loss, pred, mask)
            objective = loss
            for addon in addons:
                objective = objective + addon.objective_term(out, run.updater.loss_scale(run.device))
        skipped = run.updater.step(objective, lr)
    for addon in addons:
        addon.after_step(out, skipped)
        if logs is not None:
            logs.update(run.dist.mean_dict(addon.step_logs()))
    loss = run.dist.mean(loss.detach())  # the mean over the ranks: every rank logs and checks the same loss
    run.nan.add(loss, skipped, run.step)
    return loss
