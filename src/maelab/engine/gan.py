"""The adversarial phases: the generator step (the MAE's objective with D frozen) and the discriminator step.

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
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn
from tqdm import tqdm

from maelab.config import GanConfig
from maelab.engine.device import autocast
from maelab.engine.numerics import optimizer_step
from maelab.losses import adaptive_weight, d_loss, g_loss, r1_penalty
from maelab.models.discriminator import PatchDiscriminator, build_discriminator
from maelab.models.mae import patchify, unpatchify


@dataclass
class CollapseWatch:
    """Warns once when D's loss stays below ``gan.collapse_loss`` at ``gan.collapse_steps`` consecutive logged
    steps: D then wins outright and its gradient tells the MAE nothing (the warning and the field
    ``gan_collapse`` go to stderr and the step's metrics record). Not checkpointed: a resumed run watches anew."""

    threshold: float
    patience: int  # 0: never warn
    streak: int = 0
    warned: bool = False

    def update(self, record: dict[str, Any]) -> dict[str, Any]:
        """Read a step record's ``d_loss`` (absent while D is off); returns the fields to add to it."""
        if "d_loss" not in record or self.patience == 0 or self.warned:
            return {}
        self.streak = self.streak + 1 if record["d_loss"] < self.threshold else 0
        if self.streak < self.patience:
            return {}
        self.warned = True
        tqdm.write(f"maelab: warning: the discriminator's loss stayed below gan.collapse_loss={self.threshold} at "
              f"{self.patience} logged steps in a row (step {record.get('step')}): D wins outright and gives the "
              "MAE no useful signal; lower gan.lr, or set gan.r1=1 or gan.spectral_norm=true", file=sys.stderr)
        return {"gan_collapse": 1}


DISC_SHAPE = ("conditional", "width", "depth", "spectral_norm")  # the gan.* settings that shape D's parameters


@dataclass
class Gan:
    """The discriminator, its optimizer and scaler, and how it is trained."""

    cfg: GanConfig
    disc: PatchDiscriminator
    optimizer: torch.optim.Adam
    scaler: Optional[torch.amp.GradScaler]
    device: torch.device
    precision: str
    collapse: CollapseWatch = field(default_factory=lambda: CollapseWatch(0.0, 0))
    sync_grads: Optional[Callable[[], None]] = None  # under torchrun: average D's gradients over the ranks

    def active(self, epoch: int) -> bool:
        """Whether the adversarial term and the D step run in ``epoch`` (from ``gan.start_epoch`` on)."""
        return epoch >= self.cfg.start_epoch

    def state_dict(self) -> dict:
        state = {"disc": self.disc.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.disc.load_state_dict(state["disc"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])


def build_gan(cfg: GanConfig, img_size: int, device: torch.device, precision: str) -> Gan:
    """D (channels_last), Adam(gan.lr, betas) and, for fp16, a GradScaler of its own.

    channels_last is used on every device: on this project's 2-core CPU it cut D's convolution time by
    about a quarter (oneDNN), and it is the fast layout for convolutions on CUDA.
    """
    disc = build_discriminator(img_size, 6 if cfg.conditional else 3, cfg.width, cfg.depth, cfg.spectral_norm)
    disc = disc.to(device, memory_format=torch.channels_last)
    kwargs = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **kwargs)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    return Gan(cfg, disc, optimizer, scaler, device, precision, CollapseWatch(cfg.collapse_loss, cfg.collapse_steps))


def masked_input(imgs: Tensor, mask: Tensor, patch_size: int) -> Tensor:
    """The encoder's view as an image: imgs [N, 3, H, W] with the patches where mask [N, L] is 1 set to 0."""
    patches = patchify(imgs, patch_size)
    return unpatchify(patches * (1 - mask.to(patches.dtype)).unsqueeze(-1), patch_size)


def d_input(gan: Gan, imgs: Tensor, cond: Optional[Tensor]) -> Tensor:
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


def generator_step(gan: Gan, fake: Tensor, cond: Optional[Tensor], rec_loss: Tensor, last_layer: Tensor,
                   scale: Tensor | float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """The generator's objective L_rec + λ·L_adv; call it inside :func:`frozen` (D) and the step's autocast.

    fake [N, 3, H, W]: the reconstruction, attached to the MAE's graph. ``last_layer`` is the decoder's
    last weight (for ``gan.adaptive``); ``scale`` is the MAE's fp16 loss scale (1 otherwise). The caller
    backpropagates the loss and steps the MAE's optimizer. Logs: g_adv (L_adv), gan_weight (λ).
    """
    adv = g_loss(gan.cfg.loss, gan.disc(d_input(gan, fake, cond)))
    if not gan.cfg.adaptive:
        logged = torch.full((), gan.cfg.weight, dtype=torch.float64, device=adv.device)
        return rec_loss + gan.cfg.weight * adv, {"g_adv": adv.detach(), "gan_weight": logged}
    weight = adaptive_weight(rec_loss, adv, last_layer, scale) * gan.cfg.weight
    return rec_loss + weight * adv, {"g_adv": adv.detach(), "gan_weight": weight}


def discriminator_step(gan: Gan, real: Tensor, fake: Tensor, cond: Optional[Tensor],
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


__all__ = ["Gan", "build_gan", "d_input", "discriminator_step", "frozen", "generator_step", "masked_input"]
