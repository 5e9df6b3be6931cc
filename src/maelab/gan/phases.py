"""The adversarial phases: the generator's term (added to the MAE's objective, D frozen) and the D step.

The MAE decoder is the generator. Real = the augmented, normalised batch the MAE saw; fake = its
reconstruction with the visible patches pasted back (``MAE.reconstruct``), in the same normalised pixel
space (the dataset's mean/std): D never sees [0, 1] pixels, only that space, for real and fake alike.
With ``gan.conditional`` D also sees the masked input (the image with its masked patches zeroed, i.e. set
to the dataset mean) as three more channels, pix2pix-style.

Following taming-transformers and stylegan2-ada, each phase is one function returning ``(loss, logs)``;
the logs are detached device tensors (the engine syncs them at log steps only). D has its own Adam and,
under fp16, its own GradScaler.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Optional

import torch
from torch import Tensor, nn

from maelab.gan.losses import adaptive_weight, d_loss, g_loss, r1_penalty
from maelab.gan.state import GanState
from maelab.models.patches import patchify, unpatchify
from maelab.precision import autocast
from maelab.update_paths import optimizer_step


def masked_input(imgs: Tensor, mask: Tensor, patch_size: int) -> Tensor:
    """The encoder's view as an image: imgs [N, 3, H, W] with the patches where mask [N, L] is 1 set to 0."""
    patches = patchify(imgs, patch_size)
    return unpatchify(patches * (1 - mask.to(patches.dtype)).unsqueeze(-1), patch_size)


def d_input(gan: GanState, imgs: Tensor, cond: Optional[Tensor]) -> Tensor:
    """What D reads: imgs [N, 3, H, W], with the condition [N, 3, H, W] as 3 more channels when given
    (channels_last memory, as D's weights)."""
    x = imgs if cond is None else torch.cat([imgs, cond.to(imgs.dtype)], dim=1)
    return x.contiguous(memory_format=torch.channels_last)


@contextlib.contextmanager
def frozen(module: Optional[nn.Module]) -> Iterator[None]:
    """Turn off ``requires_grad`` of ``module``'s parameters for the block (nothing when ``module`` is None)."""
    if module is None:
        yield
        return
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def adversarial_term(gan: GanState, fake: Tensor, cond: Optional[Tensor], rec_loss: Tensor, last_layer: Tensor,
                     scale: Tensor | float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """λ·L_adv, the generator's term of the MAE's objective L_rec + λ·L_adv; call it inside :func:`frozen` (D)
    and the step's autocast.

    fake [N, 3, H, W]: the reconstruction, attached to the MAE's graph. ``rec_loss`` (L_rec) and ``last_layer``
    (the decoder's last weight) set λ under ``gan.adaptive`` (VQGAN: ‖∇L_rec‖ / ‖∇L_adv‖ at that layer);
    ``scale`` is the MAE's fp16 loss scale (1 otherwise). Logs: g_adv (L_adv), gan_weight (λ).
    """
    adv = g_loss(gan.cfg.loss, gan.disc(d_input(gan, fake, cond)))
    if not gan.cfg.adaptive:
        logged = torch.full((), gan.cfg.weight, dtype=torch.float64, device=adv.device)
        return gan.cfg.weight * adv, {"g_adv": adv.detach(), "gan_weight": logged}
    weight = adaptive_weight(rec_loss, adv, last_layer, scale) * gan.cfg.weight
    return weight * adv, {"g_adv": adv.detach(), "gan_weight": weight}


def discriminator_step(gan: GanState, real: Tensor, fake: Tensor, cond: Optional[Tensor],
                       skip: Optional[Tensor] = None) -> tuple[Tensor, dict[str, Tensor]]:
    """One D update on real [N, 3, H, W] vs fake [N, 3, H, W] (detached), plus γ·R1 on the reals.

    ``skip`` (0-d bool, ``train.on_nan=skip``: whether the MAE's step was skipped) guards the update: it is
    skipped when True or when D's loss or gradients are non-finite; None steps unguarded.
    Returns D's total loss (detached) and logs: d_loss (the adversarial part), d_real / d_fake (mean logits),
    and r1 (the penalty, when gan.r1 > 0).
    """
    if fake.requires_grad:
        raise ValueError("discriminator_step needs fake.detach(): D must not backpropagate into the MAE")
    r1 = gan.cfg.r1 > 0
    real = real.detach().requires_grad_(r1)
    with autocast(gan.device, gan.precision):
        x = torch.cat([d_input(gan, real, cond), d_input(gan, fake, cond)])
        real_logits, fake_logits = gan.disc(x).chunk(2)
        adv = d_loss(gan.cfg.loss, real_logits, fake_logits)
        penalty = r1_penalty(real_logits, real) if r1 else None
        total = adv + gan.cfg.r1 * penalty if r1 else adv
    gan.optimizer.zero_grad(set_to_none=True)
    (gan.scaler.scale(total) if gan.scaler is not None else total).backward()
    if gan.sync_grads is not None:
        gan.sync_grads()
    optimizer_step(gan.optimizer, gan.scaler, gan.disc.parameters(), None, total if skip is not None else None, skip)
    logs = {"d_loss": adv.detach(), "d_real": real_logits.detach().float().mean(),
            "d_fake": fake_logits.detach().float().mean()}
    if penalty is not None:
        logs["r1"] = penalty.detach()
    return total.detach(), logs


__all__ = ["adversarial_term", "d_input", "discriminator_step", "frozen", "masked_input"]
