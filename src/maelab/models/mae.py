"""The masked autoencoder: ViT encoder on visible patches, light decoder with mask tokens, per-patch head."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from maelab.masking import Mask
from maelab.models.kernels import TORCH, TorchKernels
from maelab.models.patches import patchify, unpatchify
from maelab.models.vit import (
    Block,
    ViTEncoder,
    gather_rows,
    init_weights,
    scatter_rows,
    sincos_pos_embed,
    trunc_normal_tokens,
)
from maelab.presets import ModelSpec


def normalize_patches(target: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """Per-patch standardisation (norm_pix_loss): target [N, L, P] -> (normed, mean [N, L, 1], std [N, L, 1])."""
    mean = target.mean(dim=-1, keepdim=True)
    std = (target.var(dim=-1, keepdim=True) + eps).sqrt()
    return (target - mean) / std, mean, std


class MAEDecoder(nn.Module):
    """Decoder: latent [N, 1 + K, D] + ids_restore [N, L] -> per-patch predictions [N, L, p * p * 3].

    ``keep_valid`` [N, K] bool marks the encoder's padding (per-sample ratios): padded latents are replaced by
    the mask token, so the decoder sees each sample's own visible patches and mask tokens everywhere else.
    """

    def __init__(self, spec: ModelSpec, kernels: TorchKernels = TORCH) -> None:
        super().__init__()
        self.kernels = kernels
        dim = spec.decoder_embed_dim
        self.embed = nn.Linear(spec.embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        # [1, 1 + L, D]: zeros for the cls token (no position), then the patches' fixed sin-cos positions
        pos = torch.cat([torch.zeros(1, dim), sincos_pos_embed(dim, spec.grid, spec.pos_embed_order)]).unsqueeze(0)
        self.register_buffer("pos_embed", pos, persistent=False)
        self.blocks = nn.ModuleList(
            Block(dim, spec.decoder_num_heads, spec.decoder_mlp_dim, kernels=kernels, norm_eps=spec.norm_eps)
            for _ in range(spec.decoder_depth)
        )
        self.norm = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.head = nn.Linear(dim, spec.patch_size**2 * 3)

    def token_table(self, x: Tensor) -> Tensor:
        """x [N, 1 + K, D] embedded latents -> [N, K + 2, D]: cls, the K visible tokens, the mask token."""
        return torch.cat([x, self.mask_token.to(x.dtype).expand(x.shape[0], 1, -1)], dim=1)

    @staticmethod
    def token_index(ids_restore: Tensor, num_visible: int, keep_valid: Optional[Tensor]) -> Tensor:
        """Where each decoder input comes from in :meth:`token_table`: [N, 1 + L] int64.

        Position 0 is the cls token; patch j (in patch order) is visible token ``ids_restore[j]`` when that is
        below ``num_visible`` (and not padding, per ``keep_valid`` [N, K]), else the mask token (index K + 1).
        One gather then builds the whole input: no L mask tokens concatenated, no second pass to unshuffle.
        """
        visible = ids_restore < num_visible
        if keep_valid is not None:  # per-sample ratios: padded encoder slots become mask tokens too
            valid = torch.gather(keep_valid, 1, ids_restore.clamp(max=num_visible - 1))
            visible = visible & valid
        index = torch.where(visible, ids_restore + 1, num_visible + 1)
        return torch.cat([torch.zeros_like(index[:, :1]), index], dim=1)

    def forward(self, latent: Tensor, ids_restore: Tensor, keep_valid: Optional[Tensor] = None,
                ids_masked: Optional[Tensor] = None) -> Tensor:
        """-> predictions [N, L, p*p*3] in patch order, or [N, M, p*p*3] for the patch indices ``ids_masked``
        [N, M] only.

        With ``ids_masked`` (the masked patches, all the loss reads), the last block still lets every token be a key,
        but its projection and MLP, the norm and the head run on those M rows alone: the same predictions for
        them, and a quarter less of the last block's and the head's work at ratio 0.75.
        """
        x = self.kernels.linear(latent, self.embed)
        x = gather_rows(self.token_table(x), self.token_index(ids_restore, x.shape[1] - 1, keep_valid))
        x = x + self.pos_embed  # the cls token, then the patches in patch order
        rows = None if ids_masked is None else ids_masked + 1  # token rows: the cls token comes first
        for i, block in enumerate(self.blocks):
            x = block(x, rows=rows if i == len(self.blocks) - 1 else None)
        if rows is None:
            return self.kernels.linear(self.norm(x[:, 1:]), self.head)  # the cls token needs no prediction
        return self.kernels.linear(self.norm(x if len(self.blocks) else gather_rows(x, rows)), self.head)


class MAEOutput(NamedTuple):
    """:meth:`MAE.forward`'s result: ``loss`` 0-d, ``pred`` [N, M, P] at the drawn mask's ``ids_masked``."""

    loss: Tensor
    pred: Tensor


class MAE(nn.Module):
    """Masked autoencoder. The model computes; the ratio comes from the caller (a schedule)."""

    def __init__(self, spec: ModelSpec, norm_pix_loss: bool = False, loss: str = "mse",
                 kernels: TorchKernels = TORCH) -> None:
        super().__init__()
        self.spec = spec
        self.norm_pix_loss = norm_pix_loss
        self.loss_type = loss
        self.kernels = kernels  # how the blocks compute (maelab.models.kernels), chosen once by the caller
        self.encoder = ViTEncoder.from_spec(spec, kernels=kernels)
        self.decoder = MAEDecoder(spec, kernels)
        self.apply(init_weights)
        trunc_normal_tokens(self.encoder.cls_token, self.decoder.mask_token)
        if self.encoder.registers is not None:  # drawn last: without registers the RNG stream is unchanged
            trunc_normal_tokens(self.encoder.registers)

    def target(self, imgs: Tensor, patches: Optional[Tensor] = None) -> Tensor:
        """What the head predicts: patches [N, L, P], per-patch normalised when norm_pix_loss.

        ``patches`` is ``patchify(imgs)`` when the caller has it already.
        """
        target = patchify(imgs, self.spec.patch_size) if patches is None else patches
        return normalize_patches(target)[0] if self.norm_pix_loss else target

    def patch_errors(self, pred: Tensor, target: Tensor) -> Tensor:
        """Per-patch error sums in float32: pred, target [N, M, P] -> [N, M] (squared for mse, absolute for l1)."""
        with torch.autocast(pred.device.type, enabled=False):  # autocast would run vecdot in fp16/bf16
            diff = pred.float() - target.float()
            # vecdot: one fused pass forward and backward, about half the time of (d ** 2).mean(-1)
            return torch.linalg.vecdot(diff, diff) if self.loss_type == "mse" else diff.abs().sum(dim=-1)

    def masked_loss(self, pred: Tensor, target: Tensor, weights: Optional[Tensor]) -> Tensor:
        """Mean error per pixel value over the masked patches: pred, target [N, M, P]; ``weights`` [N, M] (1 =
        masked; None = all masked). MAE's loss (He et al. 2022, eq. in section 3: MSE on masked patches only)."""
        per_patch = self.patch_errors(pred, target)
        if weights is None:
            return per_patch.mean() / pred.shape[-1]
        return (per_patch * weights).sum() / (weights.sum() * pred.shape[-1])

    def forward(self, imgs: Tensor, mask: Mask) -> MAEOutput:
        """imgs [N, 3, H, W] (normalised), a drawn mask (:func:`maelab.masking.draw_mask`) -> MAEOutput: the loss
        (0-d) and the predictions [N, M, p*p*3] of the patches ``mask.ids_masked`` [N, M].

        One behaviour in training and evaluation: the encoder sees the visible patches, the decoder predicts the
        masked ones (its last block, norm and head run on those rows alone), the loss is their mean error. With
        per-sample ratios the encoder's input is padded to the largest visible count and the padding hidden from
        attention by a key mask. :meth:`reconstruct` turns the predictions into images.
        """
        patches = patchify(imgs, self.spec.patch_size)  # cut once: the encoder's input and the loss target
        latent = self.encoder(imgs, mask.ids_keep, mask.keep_valid, patches)
        pred = self.decoder(latent, mask.ids_restore, mask.keep_valid, mask.ids_masked)
        target = self.target(imgs, gather_rows(patches, mask.ids_masked))
        return MAEOutput(self.masked_loss(pred, target, mask.weights), pred)

    def reconstruct(self, imgs: Tensor, pred: Tensor, mask: Mask) -> Tensor:
        """The reconstruction in the input's space: ``pred`` [N, M, P] (:meth:`forward`'s) at the masked patches,
        the visible patches of ``imgs`` [N, 3, H, W] pasted back -> [N, 3, H, W] float32.

        With norm_pix_loss the prediction is de-normalised with each target patch's own mean and std.
        """
        p = self.spec.patch_size
        patches = patchify(imgs, p)
        full = scatter_rows(pred.float(), mask.ids_masked, patches.shape[1])
        if self.norm_pix_loss:
            _, mean, std = normalize_patches(patches)
            full = full * std + mean
        m = mask.binary.unsqueeze(-1)
        return unpatchify(patches * (1 - m) + full * m, p)


def build_mae(spec: ModelSpec, norm_pix_loss: bool = False, loss: str = "mse",
              kernels: TorchKernels = TORCH) -> MAE:
    """Construct an MAE from a resolved spec; ``kernels``: PyTorch's (the default) or a device's fast paths
    (:func:`maelab.models.cpu.kernels_for`), chosen once here."""
    return MAE(spec, norm_pix_loss=norm_pix_loss, loss=loss, kernels=kernels)


__all__ = ["MAE", "MAEDecoder", "MAEOutput", "build_mae", "normalize_patches"]
