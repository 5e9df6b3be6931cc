"""The masked autoencoder: ViT encoder on visible patches, light decoder with mask tokens, per-patch head."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from maelab.masking import Mask
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

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        dim = spec.decoder_embed_dim
        self.embed = nn.Linear(spec.embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        # [1, 1 + L, D]: zeros for the cls token (no position), then the patches' fixed sin-cos positions
        pos = torch.cat([torch.zeros(1, dim), sincos_pos_embed(dim, spec.grid, spec.pos_embed_order)]).unsqueeze(0)
        self.register_buffer("pos_embed", pos, persistent=False)
        self.blocks = nn.ModuleList(
            Block(dim, spec.decoder_num_heads, spec.decoder_mlp_dim, norm_eps=spec.norm_eps)
            for _ in range(spec.decoder_depth)
        )
        self.norm = nn.LayerNorm(dim, eps=spec.norm_eps)
        self.head = nn.Linear(dim, spec.patch_size**2 * 3)

    def forward(self, latent: Tensor, ids_restore: Tensor, keep_valid: Optional[Tensor] = None,
                ids_masked: Optional[Tensor] = None) -> Tensor:
        """-> predictions [N, L, p*p*3] in patch order, or [N, M, p*p*3] for the patch indices ``ids_masked``
        [N, M] only (the masked patches: all the loss reads).

        Only the predicted rows leave the last block: they still attend to every token, but its projection and
        MLP, the norm and the head skip the rows nobody reads (the visible patches, the cls token): the same
        predictions as facebookresearch/mae's decoder on every token, a quarter less of that work at ratio 0.75.
        """
        x = self.embed(latent)  # [N, 1 + K, D_dec]
        x = self.unshuffle(x, ids_restore, keep_valid)  # [N, 1 + L, D_dec]: cls, then every patch in patch order
        x = x + self.pos_embed
        rows = self.predicted_rows(ids_restore, ids_masked)  # [N, M]: the token rows to predict
        for block in self.blocks[:-1]:
            x = block(x)
        x = self.blocks[-1](x, rows=rows) if len(self.blocks) else gather_rows(x, rows)  # [N, M, D_dec]
        return self.head(self.norm(x))

    def unshuffle(self, x: Tensor, ids_restore: Tensor, keep_valid: Optional[Tensor]) -> Tensor:
        """x [N, 1 + K, D] (cls, the K encoded patches) -> [N, 1 + L, D]: the cls token, then each patch in patch
        order: its latent where it was visible, the mask token where it was masked (facebookresearch/mae's
        ``x_ = torch.cat([x[:, 1:], mask_tokens]); torch.gather(x_, 1, ids_restore)``)."""
        n, k1, d = x.shape
        mask_token = self.mask_token.to(x.dtype)
        visible = x[:, 1:]
        if keep_valid is not None:  # per-sample ratios: the padding slots hold masked patches
            visible = torch.where(keep_valid.unsqueeze(-1), visible, mask_token)
        tokens = torch.cat([x[:, :1], visible, mask_token.expand(n, ids_restore.shape[1] + 1 - k1, d)], dim=1)
        order = torch.cat([torch.zeros_like(ids_restore[:, :1]), ids_restore + 1], dim=1)  # the cls token stays first
        return gather_rows(tokens, order)

    @staticmethod
    def predicted_rows(ids_restore: Tensor, ids_masked: Optional[Tensor]) -> Tensor:
        """The decoder's token rows whose predictions are asked for: [N, M] int64, ``ids_masked`` + 1 (the cls
        token is row 0), or every patch's row 1 .. L when ``ids_masked`` is None."""
        if ids_masked is not None:
            return ids_masked + 1
        n, length = ids_restore.shape
        return torch.arange(1, length + 1, device=ids_restore.device).expand(n, length)


class MAEOutput(NamedTuple):
    """:meth:`MAE.forward`'s result: ``loss`` 0-d, ``pred`` [N, M, P] at the drawn mask's ``ids_masked``."""

    loss: Tensor
    pred: Tensor


class MAE(nn.Module):
    """Masked autoencoder. The model computes; the ratio comes from the caller (a schedule)."""

    def __init__(self, spec: ModelSpec, norm_pix_loss: bool = False, loss: str = "mse") -> None:
        super().__init__()
        self.spec = spec
        self.norm_pix_loss = norm_pix_loss
        self.loss_type = loss
        self.encoder = ViTEncoder.from_spec(spec)
        self.decoder = MAEDecoder(spec)
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
        patches = patchify(imgs, self.spec.patch_size)  # [N, L, P]: the image as a sequence of patches
        # encoder: the visible patches only, embedded with their positions, a cls token, the ViT blocks
        latent = self.encoder(imgs, mask.ids_keep, mask.keep_valid, patches)  # [N, 1 + K, D]
        # decoder: the latents back in patch order with a mask token at every masked patch, light blocks, a head
        pred = self.decoder(latent, mask.ids_restore, mask.keep_valid, mask.ids_masked)  # [N, M, P]
        # loss: the mean error of the predicted pixels over the masked patches (normalised per patch: norm_pix)
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


def build_mae(spec: ModelSpec, norm_pix_loss: bool = False, loss: str = "mse") -> MAE:
    """Construct an MAE from a resolved spec (fresh weights). The CPU's fast paths, where a run uses them, are
    put in afterwards (:func:`maelab.models.cpu.use_kernels`)."""
    return MAE(spec, norm_pix_loss=norm_pix_loss, loss=loss)


__all__ = ["MAE", "MAEDecoder", "MAEOutput", "build_mae", "normalize_patches"]
