"""Model FLOPs per image, counted analytically from a :class:`ModelSpec` (for throughput and utilisation).

Only matrix products are counted, 2 FLOPs per multiply-add (the usual convention, and what
``torch.utils.flop_counter`` counts; tests/models/test_flops.py checks that the two agree): the patch
embedding, each block's qkv projection, attention scores (q·kᵀ), softmax-weighted sum (attn·v), output
projection and MLP, the decoder's embedding, its blocks over all patches (visible tokens and mask tokens;
in training the last block's projection and MLP over the masked patches only) and its per-patch head.
Norms, softmax, GELU, biases and the loss are left out (about 1% here). A training
step is counted as 3 × the forward pass (backward ≈ 2 × forward), also the usual convention.
"""

from __future__ import annotations

from maelab.masking import num_visible
from maelab.presets import ModelSpec


def linear_flops(tokens: int, d_in: int, d_out: int) -> int:
    """A linear layer applied to ``tokens`` tokens."""
    return 2 * tokens * d_in * d_out


def block_flops(tokens: int, dim: int, mlp_dim: int, rows: int | None = None) -> int:
    """One pre-norm transformer block over ``tokens`` tokens of width ``dim`` (any number of heads); with
    ``rows``, the projection and MLP run on that many of them (the decoder's last block in training)."""
    rows = tokens if rows is None else rows
    qkv = linear_flops(tokens, dim, 3 * dim)
    scores = 2 * tokens * tokens * dim  # q·kᵀ summed over heads
    weighted = 2 * tokens * tokens * dim  # attn·v summed over heads
    proj = linear_flops(rows, dim, dim)
    mlp = linear_flops(rows, dim, mlp_dim) + linear_flops(rows, mlp_dim, dim)
    return qkv + scores + weighted + proj + mlp


def patch_embed_flops(spec: ModelSpec, patches: int) -> int:
    """The patch projection applied to ``patches`` patches."""
    return linear_flops(patches, spec.patch_size**2 * 3, spec.embed_dim)


def encoder_flops(spec: ModelSpec, patches: int) -> int:
    """The encoder's blocks on ``patches`` patch tokens plus the cls and register tokens (no patch embed)."""
    tokens = 1 + spec.registers + patches
    return spec.depth * block_flops(tokens, spec.embed_dim, spec.mlp_dim)


def mae_forward_flops(spec: ModelSpec, mask_ratio: float, reference: bool = False) -> dict[str, int]:
    """Forward FLOPs per image of :class:`maelab.models.MAE` at ``mask_ratio``, by part (and ``total``).

    maelab embeds only the visible patches and predicts only the masked ones: the decoder's last block (after
    attention) and the head run on the masked patches only.
    ``reference`` counts the layout of facebookresearch/mae and HF's ViTMAE instead: every patch embedded
    before masking, the head applied to every token, the cls token too.
    """
    keep = num_visible(spec.num_patches, mask_ratio)
    dec_tokens = 1 + spec.num_patches  # cls + visible + mask tokens, all in patch order
    out_rows = dec_tokens if reference else spec.num_patches - keep
    dim, mlp, depth = spec.decoder_embed_dim, spec.decoder_mlp_dim, spec.decoder_depth
    last_rows = dec_tokens if reference else out_rows
    parts = {
        "patch_embed": patch_embed_flops(spec, spec.num_patches if reference else keep),
        "encoder": encoder_flops(spec, keep),
        "decoder_embed": linear_flops(1 + keep, spec.embed_dim, dim),
        "decoder": (depth - 1) * block_flops(dec_tokens, dim, mlp) + block_flops(dec_tokens, dim, mlp, last_rows)
        if depth else 0,
        "head": linear_flops(out_rows, dim, spec.patch_size**2 * 3),
    }
    parts["total"] = sum(parts.values())
    return parts


def features_flops(spec: ModelSpec) -> int:
    """Forward FLOPs per image of ``ViTEncoder.forward_features`` (whole image, no masking)."""
    return patch_embed_flops(spec, spec.num_patches) + encoder_flops(spec, spec.num_patches)


def classifier_flops(spec: ModelSpec, num_classes: int) -> int:
    """Forward FLOPs per image of the fine-tuning classifier (encoder on the whole image + linear head)."""
    return features_flops(spec) + linear_flops(1, spec.embed_dim, num_classes)


def train_flops(forward: int) -> int:
    """FLOPs of a training step from its forward FLOPs: forward + backward ≈ 3 × forward."""
    return 3 * forward


__all__ = ["block_flops", "classifier_flops", "encoder_flops", "features_flops", "linear_flops",
           "mae_forward_flops", "patch_embed_flops", "train_flops"]
