"""maelab's MAE and HF transformers' ``ViTMAEForPreTraining`` / ``ViTModel``: configs and weight names both ways.

The names are those of the checkpoints on the HF hub (``facebook/vit-mae-base``: ``vit.encoder.layer.N.attention.
attention.query``...), which transformers 4 and 5 both load. transformers 5 names its modules otherwise
(``vit.layers.N.attention.q_proj``, ``mlp.fc1``) and 5.17's ``save_pretrained`` writes the decoder's blocks as
``decoder.decoder_encoder.layer.N``: :func:`hub_names` reads all three spellings.

maelab's fused qkv projection is HF's query, key and value stacked in that order along the output dimension
(timm's layout too). HF stores the fixed sin-cos positions with a zero row for the cls token; maelab keeps them as
buffers rebuilt from the spec, so an export writes them and an import checks which layout they have.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from maelab.errors import UserError
from maelab.models.vit import sincos_pos_embed
from maelab.presets import ModelSpec

# maelab Block parameter -> HF ViTLayer parameter (hub names)
BLOCK_NAMES = {"norm1": "layernorm_before", "attn.proj": "attention.output.dense", "norm2": "layernorm_after",
               "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
QKV = ("query", "key", "value")
# transformers 5's module names -> the hub's (applied in order)
V5_TO_HUB = [(r"(^|\.)layers\.(\d+)\.", r"\1encoder.layer.\2."),
             (r"decoder\.decoder_encoder\.layer\.", "decoder.decoder_layers."),
             (r"\.attention\.q_proj\.", ".attention.attention.query."),
             (r"\.attention\.k_proj\.", ".attention.attention.key."),
             (r"\.attention\.v_proj\.", ".attention.attention.value."),
             (r"\.attention\.o_proj\.", ".attention.output.dense."),
             (r"\.mlp\.fc1\.", ".intermediate.dense."), (r"\.mlp\.fc2\.", ".output.dense.")]


def hub_names(tensors: dict[str, Any]) -> dict[str, Any]:
    """A state dict (or any dict keyed by tensor names) with transformers 5's names (or 5.17's saved decoder
    names) renamed to the hub's."""
    out = {}
    for name, value in tensors.items():
        for pattern, repl in V5_TO_HUB:
            name = re.sub(pattern, repl, name)
        out[name] = value
    return out


def _vit_config(spec: ModelSpec) -> dict:
    return {"hidden_size": spec.embed_dim, "num_hidden_layers": spec.depth, "num_attention_heads": spec.num_heads,
            "intermediate_size": spec.mlp_dim, "hidden_act": "gelu", "layer_norm_eps": spec.norm_eps,
            "image_size": spec.img_size, "patch_size": spec.patch_size, "num_channels": 3, "qkv_bias": True,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02}


def hf_mae_config(spec: ModelSpec, norm_pix_loss: bool, mask_ratio: float) -> dict:
    """config.json of a ``ViTMAEForPreTraining`` with maelab's architecture ``spec``."""
    return {"architectures": ["ViTMAEForPreTraining"], "model_type": "vit_mae", **_vit_config(spec),
            "decoder_hidden_size": spec.decoder_embed_dim, "decoder_num_hidden_layers": spec.decoder_depth,
            "decoder_num_attention_heads": spec.decoder_num_heads, "decoder_intermediate_size": spec.decoder_mlp_dim,
            "mask_ratio": mask_ratio, "norm_pix_loss": norm_pix_loss}


def hf_vit_config(spec: ModelSpec) -> dict:
    """config.json of a ``ViTModel`` (the encoder alone) with maelab's architecture ``spec``."""
    return {"architectures": ["ViTModel"], "model_type": "vit", **_vit_config(spec), "encoder_stride": spec.patch_size}


def name_pairs(spec: ModelSpec, hf_prefix: str, decoder: bool) -> Iterator[tuple[str, str]]:
    """(maelab name, hub name) of every parameter but the qkv projections and the positions.

    ``hf_prefix``: "vit." in a ViTMAEForPreTraining, "" in a ViTModel; ``decoder``: include the decoder's."""
    emb = f"{hf_prefix}embeddings."
    yield "encoder.cls_token", f"{emb}cls_token"
    for p in ("weight", "bias"):
        yield f"encoder.patch_embed.proj.{p}", f"{emb}patch_embeddings.projection.{p}"
        yield f"encoder.norm.{p}", f"{hf_prefix}layernorm.{p}"
    yield from _block_pairs("encoder.blocks", f"{hf_prefix}encoder.layer", spec.depth)
    if decoder:
        yield "decoder.mask_token", "decoder.mask_token"
        for mine, theirs in (("embed", "decoder_embed"), ("norm", "decoder_norm"), ("head", "decoder_pred")):
            for p in ("weight", "bias"):
                yield f"decoder.{mine}.{p}", f"decoder.{theirs}.{p}"
        yield from _block_pairs("decoder.blocks", "decoder.decoder_layers", spec.decoder_depth)


def _block_pairs(mine: str, theirs: str, depth: int) -> Iterator[tuple[str, str]]:
    for i in range(depth):
        for m, h in BLOCK_NAMES.items():
            for p in ("weight", "bias"):
                yield f"{mine}.{i}.{m}.{p}", f"{theirs}.{i}.{h}.{p}"


def qkv_pairs(spec: ModelSpec, hf_prefix: str, decoder: bool) -> Iterator[tuple[str, str]]:
    """(maelab qkv name, hub name prefix of its query/key/value), e.g. ("encoder.blocks.0.attn.qkv.weight",
    "vit.encoder.layer.0.attention.attention.{}.weight")."""
    blocks = [("encoder.blocks", f"{hf_prefix}encoder.layer", spec.depth)]
    if decoder:
        blocks.append(("decoder.blocks", "decoder.decoder_layers", spec.decoder_depth))
    for mine, theirs, depth in blocks:
        for i in range(depth):
            for p in ("weight", "bias"):
                yield f"{mine}.{i}.attn.qkv.{p}", f"{theirs}.{i}.attention.attention.{{}}.{p}"


def with_cls_row(table: Tensor) -> Tensor:
    """positions [L, D] -> [1, 1 + L, D] with a zero row for the cls token (HF's and timm's layout)."""
    return torch.cat([table.new_zeros(1, table.shape[1]), table]).unsqueeze(0)


def to_hf(state: dict[str, Tensor], spec: ModelSpec, hf_prefix: str, decoder: bool) -> dict[str, Tensor]:
    """maelab's MAE state dict (``encoder.*``, and ``decoder.*`` when ``decoder``) -> hub-named tensors, the
    positions (of ``spec.pos_embed_order``) included. Raises UserError for register tokens (HF has none)."""
    if spec.registers:
        raise UserError(f"the run's encoder has {spec.registers} register tokens, which HF's ViT and ViTMAE do not "
                        "have: export it with --format safetensors")
    out = {theirs: state[mine] for mine, theirs in name_pairs(spec, hf_prefix, decoder)}
    for mine, theirs in qkv_pairs(spec, hf_prefix, decoder):
        for name, part in zip(QKV, state[mine].chunk(3, dim=0), strict=True):
            out[theirs.format(name)] = part
    grid, order = spec.grid, spec.pos_embed_order
    out[f"{hf_prefix}embeddings.position_embeddings"] = with_cls_row(sincos_pos_embed(spec.embed_dim, grid, order))
    if decoder:
        out["decoder.decoder_pos_embed"] = with_cls_row(sincos_pos_embed(spec.decoder_embed_dim, grid, order))
    return {k: v.detach().contiguous() for k, v in out.items()}


def from_hf(tensors: dict[str, Tensor], spec: ModelSpec, hf_prefix: str, decoder: bool) -> dict[str, Tensor]:
    """Hub-named tensors (:func:`hub_names` first) -> maelab's state dict; the positions are not weights in maelab
    (see :func:`pos_embed_order_of`). Raises UserError naming a missing tensor."""
    def take(name: str) -> Tensor:
        if name not in tensors:
            raise UserError(f"the HF weights lack {name}: the folder is not a ViTMAE/ViT of its own config.json")
        return tensors[name]

    out = {mine: take(theirs) for mine, theirs in name_pairs(spec, hf_prefix, decoder)}
    for mine, theirs in qkv_pairs(spec, hf_prefix, decoder):
        out[mine] = torch.cat([take(theirs.format(name)) for name in QKV])
    return out


def pos_embed_order_of(table: Tensor, grid: int, where: str) -> str:
    """Which sin-cos layout the positions ``table`` [1, 1 + L, D] (or [1 + L, D]) have: "hw" or "wh".

    Raises UserError when they are neither (learned or interpolated positions, or the zeros of a transformers 5
    model built without ``from_pretrained``): maelab's ViT uses fixed 2-D sin-cos positions."""
    patches = table.reshape(-1, table.shape[-1])[1:].float()
    for order in ("hw", "wh"):
        if torch.allclose(patches, sincos_pos_embed(table.shape[-1], grid, order), atol=1e-4):
            return order
    zeros = " (all zeros: a transformers 5 model built in code has no positions until they are set)" \
        if not patches.any() else ""
    raise UserError(f"the position embeddings {where} are not 2-D sin-cos in either layout{zeros}: maelab's ViT uses "
                    "MAE's fixed sin-cos positions, so these weights cannot be imported as they are")


__all__ = ["from_hf", "hf_mae_config", "hf_vit_config", "hub_names", "name_pairs", "pos_embed_order_of", "to_hf",
           "with_cls_row"]
