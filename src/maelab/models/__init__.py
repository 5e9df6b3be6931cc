"""Models: ViT blocks, the MAE, and named presets."""

from maelab.models.mae import MAE, build_mae
from maelab.models.patches import patchify, unpatchify
from maelab.presets import PRESETS, ModelSpec, resolve_spec

__all__ = ["MAE", "PRESETS", "ModelSpec", "build_mae", "patchify", "resolve_spec", "unpatchify"]
