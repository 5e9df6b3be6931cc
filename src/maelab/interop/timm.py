"""maelab's encoder as timm's ``VisionTransformer`` state dict.

timm's names (timm/models/vision_transformer.py: ``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N.norm1``, ``blocks.N.attn.qkv``, ``blocks.N.attn.proj``, ``blocks.N.norm2``, ``blocks.N.mlp.fc1``,
``blocks.N.mlp.fc2``, ``norm``) are maelab's encoder's own, which follows them; timm keeps its positions as a
parameter ``pos_embed`` [1, 1 + L, D] with the cls token's row first (zeros for MAE's fixed sin-cos, as
facebookresearch/mae's checkpoints). The model to load it into::

    timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, global_pool="token", **kwargs)

with ``kwargs`` from :func:`timm_kwargs` (``global_pool="token"`` keeps ``norm``; timm's "avg" pooling replaces it
by an ``fc_norm``). timm cannot be installed beside maelab's CPU torch (it imports torchvision), so the names and
shapes are tested against the list its source defines, not by loading.
"""

from __future__ import annotations

from torch import Tensor

from maelab.errors import UserError
from maelab.interop.hf import with_cls_row
from maelab.models.vit import sincos_pos_embed
from maelab.presets import ModelSpec


def to_timm(encoder_state: dict[str, Tensor], spec: ModelSpec) -> dict[str, Tensor]:
    """maelab's encoder state dict -> timm's VisionTransformer names, ``pos_embed`` (of the run's layout) added."""
    if spec.registers:
        raise UserError(f"the run's encoder has {spec.registers} register tokens: export it with --format safetensors "
                        "(timm's reg_token layout differs from maelab's)")
    out = {k: v.detach().contiguous() for k, v in encoder_state.items()}
    out["pos_embed"] = with_cls_row(sincos_pos_embed(spec.embed_dim, spec.grid, spec.pos_embed_order))
    return out


def timm_kwargs(spec: ModelSpec) -> dict:
    """The ``timm.create_model`` keyword arguments of the architecture ``spec`` (encoder only, no head)."""
    return {"img_size": spec.img_size, "patch_size": spec.patch_size, "embed_dim": spec.embed_dim,
            "depth": spec.depth, "num_heads": spec.num_heads, "mlp_ratio": spec.mlp_dim / spec.embed_dim,
            "qkv_bias": True, "class_token": True, "global_pool": "token", "num_classes": 0}


__all__ = ["timm_kwargs", "to_timm"]
