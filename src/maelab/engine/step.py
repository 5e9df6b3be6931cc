"""One pretraining step: augment and normalise, mask, forward, objective (+ the GAN's terms), optimizer step.

Every random number of a step comes from two generators seeded by (seed, step): augmentation and masks apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from maelab.data import augment
from maelab.engine.device import autocast
from maelab.engine.gan import discriminator_step, frozen, generator_step, masked_input
from maelab.engine.numerics import optimizer_step
from maelab.engine.run import Run


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
