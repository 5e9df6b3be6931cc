"""Named model sizes (``ModelSpec``, the one description of an architecture) and their resolution from the
config's ``model`` section: every field can be overridden there. Below both the config and the models (it
imports neither), so that the config checks preset names and the models build from a spec without either
importing the other; its errors name the config keys to change."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Protocol

from maelab.errors import ConfigError


class ModelSettings(Protocol):
    """What :func:`resolve_spec` reads: a preset name and, for each ModelSpec field, a value or None (the
    config's ``model`` section)."""

    preset: str


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """The resolved architecture of an MAE (encoder + decoder); keyword-only, so that two sizes cannot swap."""

    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_dim: int
    decoder_embed_dim: int
    decoder_depth: int
    decoder_num_heads: int
    decoder_mlp_dim: int
    registers: int = 0  # learnable register tokens in the encoder, dropped from its outputs
    # the 2-D sin-cos positions' channel layout: "hw" puts the patch's row index (h) in the first half of the
    # channels (maelab's own runs); "wh" puts the column (w) there, as facebookresearch/mae's
    # get_2d_sincos_pos_embed (np.meshgrid(grid_w, grid_h)) and the HF and timm MAE weights made with it
    pos_embed_order: str = "hw"
    norm_eps: float = 1e-6  # every LayerNorm's epsilon (HF's ViTMAE default is 1e-12; MAE's and timm's 1e-6)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid**2


PRESETS: dict[str, ModelSpec] = {
    # tiny, for tests and the CPU demo
    "micro": ModelSpec(
        img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2, mlp_dim=128,
        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=64),
    # the Keras MAE example's sizes (48 px, patch 6, 128 x 6 encoder, 64 x 2 decoder),
    # with the MAE paper's per-patch linear head instead of Keras' dense whole-image head
    "keras": ModelSpec(
        img_size=48, patch_size=6, embed_dim=128, depth=6, num_heads=4, mlp_dim=256,
        decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4, decoder_mlp_dim=128),
    "vit_tiny_p4": ModelSpec(
        img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, mlp_dim=768,
        decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4, decoder_mlp_dim=512),
    "vit_small_p4": ModelSpec(
        img_size=32, patch_size=4, embed_dim=384, depth=12, num_heads=6, mlp_dim=1536,
        decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8, decoder_mlp_dim=1024),
}


def resolve_spec(cfg: ModelSettings) -> ModelSpec:
    """The preset named by ``cfg.preset`` with every non-None field of ``cfg`` applied, checked."""
    spec = PRESETS[cfg.preset]
    changes = {f.name: getattr(cfg, f.name) for f in fields(ModelSpec) if getattr(cfg, f.name, None) is not None}
    spec = replace(spec, **changes)
    if spec.img_size % spec.patch_size:
        raise ConfigError(
            f"image size {spec.img_size} is not divisible by the patch size {spec.patch_size}: "
            "choose model.img_size and model.patch_size so that it is (e.g. 32 and 4)"
        )
    if spec.num_patches < 2:
        raise ConfigError(
            f"image size {spec.img_size} with patch size {spec.patch_size} gives {spec.num_patches} patch: an MAE "
            "needs at least 2 (one visible, one masked); choose a smaller model.patch_size (e.g. 4 for 32 px)"
        )
    for prefix, dim, heads in (("", spec.embed_dim, spec.num_heads),
                               ("decoder_", spec.decoder_embed_dim, spec.decoder_num_heads)):
        if dim % heads:
            raise ConfigError(
                f"model.{prefix}embed_dim={dim} is not divisible by model.{prefix}num_heads={heads}: change one"
            )
    if spec.pos_embed_order not in ("hw", "wh"):
        raise ConfigError(f"model.pos_embed_order={spec.pos_embed_order!r} is not one of hw, wh: choose hw (maelab's) "
                          "or wh (facebookresearch/mae's, HF's and timm's)")
    if not 0 < spec.norm_eps < 1:
        raise ConfigError(f"model.norm_eps={spec.norm_eps} is not in (0, 1): use 1e-6 (MAE's) or 1e-12 (HF's)")
    if spec.embed_dim % 4 or spec.decoder_embed_dim % 4:
        raise ConfigError("model.embed_dim and model.decoder_embed_dim must be multiples of 4 (2-D sin-cos position)")
    return spec
