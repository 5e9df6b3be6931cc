"""Adversarial losses on discriminator logits, the adaptive generator weight, and the R1 penalty.

All losses take logits (D has no sigmoid) of any shape (a PatchGAN gives [N, 1, h, w]) and average over
every element. With ``r`` the logits of real images and ``f`` those of reconstructions:

- vanilla: D ½ [BCE(r, 1) + BCE(f, 0)] = ½ [softplus(-r) + softplus(f)];  G -BCE(f, 0) = -softplus(f)
- nonsat:  D as vanilla;                                                   G BCE(f, 1) = softplus(-f)
- hinge:   D ½ [relu(1 - r) + relu(1 + f)];                                G -f
- lsgan:   D ½ [(r - 1)² + f²];                                            G (f - 1)²

``vanilla`` is the minimax formula E[log D(x)] + E[log(1 - D(G(x)))] of the GAN paper (and of the report's
and pix2pix's text) with binary cross-entropy on logits: G minimises log(1 - D(G(x))). ``nonsat`` is
Goodfellow's non-saturating variant (G maximises log D(G(x))), which StyleGAN uses and which the report's code
and pix2pix's code train with (BCE of the fakes against "real" labels): the minimax G loss saturates
(vanishing gradient) once D confidently rejects the fakes. The ½ on D's loss follows pix2pix
and taming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from maelab.config import GAN_LOSSES

MAX_ADAPTIVE_WEIGHT = 1e4


def d_loss(kind: str, real: Tensor, fake: Tensor) -> Tensor:
    """Discriminator loss (scalar) from real logits ``real`` and fake logits ``fake`` (any shapes)."""
    real, fake = real.float(), fake.float()
    if kind in ("vanilla", "nonsat"):
        return 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    if kind == "hinge":
        return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
    if kind == "lsgan":
        return 0.5 * ((real - 1.0).square().mean() + fake.square().mean())
    raise ValueError(f"unknown GAN loss {kind!r}: use one of {', '.join(GAN_LOSSES)}")


def g_loss(kind: str, fake: Tensor) -> Tensor:
    """Generator (adversarial) loss (scalar) from the discriminator's logits on reconstructions."""
    fake = fake.float()
    if kind == "vanilla":
        return -F.softplus(fake).mean()
    if kind == "nonsat":
        return F.softplus(-fake).mean()
    if kind == "hinge":
        return -fake.mean()
    if kind == "lsgan":
        return (fake - 1.0).square().mean()
    raise ValueError(f"unknown GAN loss {kind!r}: use one of {', '.join(GAN_LOSSES)}")


def adaptive_weight(rec_loss: Tensor, adv_loss: Tensor, last_layer: Tensor, scale: Tensor | float = 1.0,
                    eps: float = 1e-4, max_weight: float = MAX_ADAPTIVE_WEIGHT) -> Tensor:
    """VQGAN's balance ‖∇L_rec‖ / (‖∇L_adv‖ + eps), gradients w.r.t. ``last_layer``, clamped to [0, max_weight].

    Both losses must still hold their graphs (they are kept: ``retain_graph``). ``scale`` is a loss
    scale (fp16's GradScaler) applied to both losses before differentiation and removed from the norms,
    so that small fp16 gradients do not underflow; the ratio does not depend on it. Returns a detached
    0-d tensor (no host sync).
    """
    g_rec = torch.autograd.grad(rec_loss * scale, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv_loss * scale, last_layer, retain_graph=True)[0]
    weight = (g_rec.float().norm() / scale) / (g_adv.float().norm() / scale + eps)
    return weight.clamp(0.0, max_weight).detach()


def r1_penalty(real_logits: Tensor, real: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018, StyleGAN2): ½ E_x ‖∇_x D(x)‖² on real images, differentiable w.r.t. D.

    ``real`` [N, C, H, W] must require grad and ``real_logits`` be computed from it; a PatchGAN's logits
    are summed per image (as StyleGAN sums its scores). The caller multiplies by the weight γ.
    """
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real, create_graph=True)
    return 0.5 * grad.float().square().sum(dim=[1, 2, 3]).mean()


__all__ = ["GAN_LOSSES", "MAX_ADAPTIVE_WEIGHT", "adaptive_weight", "d_loss", "g_loss", "r1_penalty"]
