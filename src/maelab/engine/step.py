"""One pretraining step: augment and normalise, mask, forward, objective (+ the add-ons' terms), backward (once
per micro-batch under gradient accumulation), optimizer step, the add-ons' after-step (the GAN's discriminator step).

Every random number of a step comes from two generators seeded by (seed, step): augmentation and masks apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from maelab.addons import AddOn, StepOutput, all_frozen
from maelab.data import augment
from maelab.engine.run import Run
from maelab.masking import MaskRatio, draw_mask, round_ratio
from maelab.precision import autocast
from maelab.seeds import derive_seed
from maelab.shard import Shard


@dataclass(frozen=True)
class StepGenerators:
    """One step's two random streams, augmentation and masks, each seeded from (seed, step).

    Apart so that a variant that changes one leaves the other's draws as they were: in an ablation, seed k's
    variants with more augmentation ops still mask the same patches as the baseline (common random numbers, the
    reason the report can pair seeds)."""

    augment: torch.Generator
    mask: torch.Generator

    def state(self) -> tuple[Tensor, Tensor]:
        """Both generators' states (to :meth:`rewind` to)."""
        return self.augment.get_state(), self.mask.get_state()

    def rewind(self, state: tuple[Tensor, Tensor]) -> None:
        """Set both generators back to ``state`` (:meth:`state`'s)."""
        self.augment.set_state(state[0])
        self.mask.set_state(state[1])


def step_generators(seed: int, step: int, device: torch.device | str = "cpu") -> StepGenerators:
    """The two generators of step ``step`` (streams "augment" and "mask" of :mod:`maelab.seeds`), new ones."""
    return StepStreams(seed, device).at(step)


class StepStreams:
    """A step's two generators, streams "augment" and "mask" of :mod:`maelab.seeds` (the one place that seeds them):
    made once and reseeded at each step, so the training loop makes no generator objects on the step's path."""

    def __init__(self, seed: int, device: torch.device | str = "cpu") -> None:
        self.seed = seed
        self.generators = StepGenerators(torch.Generator(device=device), torch.Generator(device=device))

    def at(self, step: int) -> StepGenerators:
        """The generators of step ``step``, seeded as :func:`step_generators` seeds them (the previous step's are
        reseeded: use them before asking for the next)."""
        self.generators.augment.manual_seed(derive_seed(self.seed, "augment", step))
        self.generators.mask.manual_seed(derive_seed(self.seed, "mask", step))
        return self.generators


def train_step(run: Run, imgs_u8: Tensor, lr: float, ratio: MaskRatio | float | Tensor, generators: StepGenerators,
               logs: Optional[dict[str, Tensor]] = None) -> Tensor:
    """One optimizer step on a uint8 batch [B, H, W, 3]; returns the reconstruction loss as a device tensor
    (no host sync). ``ratio``: the step's mask ratio as :meth:`Run.mask_ratio` rounds it (a float or per-sample
    tensor is rounded here). Under torchrun the batch is this rank's shard, ``ratio`` (per-sample: [world_size x B])
    is the global batch's, and the loss and logs returned are the means over the ranks.

    With ``optim.accum_steps`` K > 1 the batch is K micro-batches of ``optim.batch_size``: each draws its rows of
    the step's random numbers as a rank of a K-times larger world would (the generators rewound to the step's
    start for each), the gradients of their objectives / K add up, and one optimizer step follows: the update of
    the whole batch. The loss returned is the micro-batches' mean.

    Add-ons (:mod:`maelab.addons`, the run's list; the GAN from gan.start_epoch) add their terms to the objective with
    their own parameters frozen, and act after the MAE's step (the GAN: one discriminator step); their logs
    (detached device tensors) are written into ``logs`` when it is given.
    """
    k = run.cfg.optim.accum_steps
    ratio = round_ratio(run.model.spec.num_patches, ratio)
    addons = run.active_addons()
    start = generators.state() if k > 1 else None
    losses, objectives = [], []
    run.updater.zero_grad()
    with all_frozen(addons):
        for i, micro in enumerate(imgs_u8.chunk(k)):
            if start is not None:
                generators.rewind(start)
            loss, objective, out = forward_objective(run, micro, ratio, generators, run.dist.shard.micro(i, k), addons)
            run.updater.backward(objective if k == 1 else objective / k)
            losses.append(loss)
            objectives.append(objective)
        skipped = run.updater.apply(lr, mean_of(objectives))
    for addon in addons:  # ``out``: the last micro-batch's (the whole batch's with the GAN: the config refuses accum)
        addon.after_step(out, skipped)
        if logs is not None:
            logs.update(run.dist.mean_dict(addon.step_logs()))
    loss = run.dist.mean(mean_of(losses).detach())  # every rank logs and checks the same loss
    run.nan.add(loss, skipped, run.step)
    return loss


def mean_of(values: list[Tensor]) -> Tensor:
    """The mean of 0-d tensors; one (no accumulation) is returned as it is: no extra kernels on the step's path."""
    return values[0] if len(values) == 1 else torch.stack(values).mean()


def forward_objective(run: Run, imgs_u8: Tensor, ratio: MaskRatio, generators: StepGenerators, shard: Shard,
                      addons: list[AddOn]) -> tuple[Tensor, Tensor, StepOutput]:
    """The forward half of a step on one (micro-)batch [B, H, W, 3], ``shard``: its rows of the global draws.
    Augment and normalise, draw the mask, forward, the objective (the loss + the add-ons' terms, in autocast).
    Returns (loss, objective, the StepOutput the add-ons read)."""
    imgs = augment(imgs_u8, run.cfg.aug, run.model.spec.img_size, generators.augment, shard)
    imgs = run.normalize(imgs)
    mask = draw_mask(len(imgs), run.model.spec.num_patches, ratio.rows(shard), imgs.device, generators.mask, shard)
    with autocast(run.device, run.precision):
        loss, pred = run.forward(imgs, mask)
        out = StepOutput(run.model, imgs, loss, pred, mask)
        objective = loss
        for addon in addons:
            objective = objective + addon.objective_term(out, run.updater.loss_scale(run.device))
    return loss, objective, out
