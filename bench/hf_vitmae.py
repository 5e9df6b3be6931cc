"""HF transformers' ViTMAEForPreTraining at a maelab ModelSpec, for the same-process comparison in throughput.py.

transformers is a bench-only extra (``pip install -e .[bench]``); it is imported only when this is used.
The configurations match layer for layer (checked by :func:`param_rows`): same widths, depths, heads, MLP
sizes, patch, image size, mask ratio, norm_pix_loss, LayerNorm eps (HF's default 1e-12 is set to maelab's
1e-6), qkv biases, frozen 2-D sin-cos positions, a final encoder norm, a decoder norm and a per-patch linear
head. Differences that stay: HF projects q, k and v with three linears where maelab uses one (same
parameters and FLOPs, three GEMMs instead of one); HF keeps ``int(L·(1-r))`` patches where maelab rounds
(equal at every ratio and patch count the presets use at 0.75); HF stores its positions as frozen
``nn.Parameter`` (not trained, not counted below) where maelab uses buffers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from maelab.engine.optim import param_groups
from maelab.models import MAE, ModelSpec


def hf_config(spec: ModelSpec, mask_ratio: float, norm_pix_loss: bool, attn: str = "sdpa"):  # -> ViTMAEConfig
    """The ViTMAEConfig of ``spec`` (``attn``: HF's attention implementation, sdpa (its default) or eager)."""
    from transformers import ViTMAEConfig

    if spec.registers:
        raise ValueError("HF's ViTMAE has no register tokens: compare at model.registers=0")
    cfg = ViTMAEConfig(
        hidden_size=spec.embed_dim, num_hidden_layers=spec.depth, num_attention_heads=spec.num_heads,
        intermediate_size=spec.mlp_dim, decoder_hidden_size=spec.decoder_embed_dim,
        decoder_num_hidden_layers=spec.decoder_depth, decoder_num_attention_heads=spec.decoder_num_heads,
        decoder_intermediate_size=spec.decoder_mlp_dim, image_size=spec.img_size, patch_size=spec.patch_size,
        mask_ratio=mask_ratio, norm_pix_loss=norm_pix_loss, layer_norm_eps=1e-6, hidden_act="gelu",
        qkv_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    cfg._attn_implementation = attn
    return cfg


def build_hf_mae(spec: ModelSpec, mask_ratio: float, norm_pix_loss: bool, device: torch.device,
                 attn: str = "sdpa") -> nn.Module:
    """A freshly initialised ``ViTMAEForPreTraining`` on ``device``, in train mode."""
    from transformers import ViTMAEForPreTraining

    torch.manual_seed(0)
    model = ViTMAEForPreTraining(hf_config(spec, mask_ratio, norm_pix_loss, attn)).to(device)
    model.config._attn_implementation = attn  # post_init may pick its own default
    return model.train()


def hf_optimizer(model: nn.Module, weight_decay: float, betas: tuple[float, float],
                 device: torch.device) -> torch.optim.AdamW:
    """AdamW with maelab's parameter groups (no decay on norms, biases, cls/mask tokens) and maelab's fused flag."""
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {}
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=1e-4, betas=betas, **fused)


def hf_train_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                  prepare: Callable[[int], Tensor], autocast: Callable[[], object]) -> Callable[[int], Tensor]:
    """A step function ``i -> loss`` like maelab's train_step: prepare batch ``i``, forward, backward, AdamW."""

    def step(i: int) -> Tensor:
        imgs = prepare(i)
        with autocast():
            loss = model(pixel_values=imgs).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def count(params: object) -> int:
    return sum(p.numel() for p in params if p.requires_grad)


def param_rows(mae: MAE, hf: nn.Module) -> list[tuple[str, int, int]]:
    """Trainable parameters part by part: (part, maelab, HF). Equal rows mean equal architectures."""
    enc, dec, vit, hdec = mae.encoder, mae.decoder, hf.vit, hf.decoder
    hf_blocks = vit.layers if hasattr(vit, "layers") else vit.encoder  # transformers 5 / 4
    rows = [
        ("patch embed", count(enc.patch_embed.parameters()), count(vit.embeddings.patch_embeddings.parameters())),
        ("cls token", enc.cls_token.numel(), vit.embeddings.cls_token.numel()),
        ("encoder blocks", count(enc.blocks.parameters()), count(hf_blocks.parameters())),
        ("encoder norm", count(enc.norm.parameters()), count(vit.layernorm.parameters())),
        ("decoder embed", count(dec.embed.parameters()), count(hdec.decoder_embed.parameters())),
        ("mask token", dec.mask_token.numel(), hdec.mask_token.numel()),
        ("decoder blocks", count(dec.blocks.parameters()), count(hdec.decoder_layers.parameters())),
        ("decoder norm", count(dec.norm.parameters()), count(hdec.decoder_norm.parameters())),
        ("decoder head", count(dec.head.parameters()), count(hdec.decoder_pred.parameters())),
    ]
    rows.append(("total trainable", count(mae.parameters()), count(hf.parameters())))
    return rows


__all__ = ["build_hf_mae", "hf_config", "hf_optimizer", "hf_train_step", "param_rows"]
