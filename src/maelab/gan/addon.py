"""The GAN as an add-on of the pretraining step (the report's third idea): D, its optimizer and scaler, and
the two things it does in a step, through the interface of :mod:`maelab.addons`:

1. ``objective_term``: λ·L_adv of the reconstruction (the visible patches pasted back), with D frozen;
2. ``after_step``: one D update on the batch vs that reconstruction (detached), skipped with the MAE's step.

Between the two calls the add-on holds the step's reconstruction; ``step_logs`` hands over the phases' logs.
Its checkpoint key is "gan"; :func:`from_config` is its factory (``maelab.addons.FACTORIES``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import torch
from torch import Tensor

from maelab.addons import AddOnContext, StepOutput
from maelab.config import Config, GanConfig
from maelab.gan.discriminator import build_discriminator
from maelab.gan.phases import adversarial_term, discriminator_step, frozen, masked_input
from maelab.gan.state import CollapseWatch, GanState


@dataclass
class Gan(GanState):
    """The GAN add-on: its state (:class:`GanState`) and what it does in a step."""

    name: ClassVar[str] = "gan"  # its key in a checkpoint
    _fake: Optional[Tensor] = None  # this step's reconstruction and condition, from objective_term to after_step
    _cond: Optional[Tensor] = None
    _logs: dict[str, Tensor] = field(default_factory=dict)

    def frozen(self) -> contextlib.AbstractContextManager:
        """D's parameters take no gradient while the MAE's objective is built and backpropagated."""
        return frozen(self.disc)

    def objective_term(self, out: StepOutput, loss_scale: Tensor | float) -> Tensor:
        """λ·L_adv of this step's reconstruction (inside the step's autocast)."""
        model = out.model
        self._fake = model.reconstruct(out.imgs, out.pred, out.mask)  # visible patches pasted back, normalised
        self._cond = masked_input(out.imgs, out.mask.binary, model.spec.patch_size) if self.cfg.conditional else None
        term, self._logs = adversarial_term(self, self._fake, self._cond, out.loss, model.decoder.head.weight,
                                            loss_scale)
        return term

    def after_step(self, out: StepOutput, skipped: Optional[Tensor]) -> None:
        """One D step on the batch vs the reconstruction; skipped with the MAE's (train.on_nan=skip)."""
        _, d_logs = discriminator_step(self, out.imgs, self._fake.detach(), self._cond, skipped)
        self._logs.update(d_logs)
        self._fake = self._cond = None

    def step_logs(self) -> dict[str, Tensor]:
        """The step's logs (detached device tensors): g_adv, gan_weight, d_loss, d_real, d_fake (, r1)."""
        logs, self._logs = self._logs, {}
        return logs

    def on_log(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The collapse watch's field for a logged step's record (``gan_collapse``, once), from its ``d_loss``."""
        return self.collapse.update(record)

    def named_tensors(self) -> dict[str, Tensor]:
        """D's weights, for the check that no non-finite weight is written to a checkpoint."""
        return {f"disc.{k}": v for k, v in self.disc.state_dict().items()}


def from_config(cfg: Config, context: AddOnContext) -> Optional[Gan]:
    """The GAN add-on of a run (None unless gan.enabled): :func:`build_gan` at the MAE's image size, its device and
    precision; under torchrun D's gradients are averaged over the ranks before each D step."""
    if not cfg.gan.enabled:
        return None
    gan = build_gan(cfg.gan, context.spec.img_size, context.device, context.precision)
    if context.average_grads is not None:
        average = context.average_grads
        gan.sync_grads = lambda: average(gan.disc)
    return gan


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
