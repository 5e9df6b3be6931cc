"""maelab from Python, in a few lines each: pretrain, open a run, reconstruct any image file, features of any
block, a linear probe, attention maps. Every function wraps the code the CLI runs (docs/api.md shows them; a
test executes that page)::

    import maelab.api as mae
    run = mae.open_run("runs/k1")
    rec = mae.reconstruct(run, "photo.jpg", ratio=0.75)
    feats = mae.features(run, "photo.jpg", layer=4)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor

from maelab.config import load_config
from maelab.data.folder import decode_image
from maelab.data.normalize import Normalizer
from maelab.engine.loading import LoadedRun, load_run
from maelab.engine.pretrain import pretrain as _pretrain
from maelab.errors import UserError
from maelab.eval.commands import run_probe
from maelab.eval.features import extract_layers
from maelab.eval.protocols import FINAL
from maelab.viz.attention import cls_attention_maps
from maelab.viz.samples import Reconstruction, pixels
from maelab.viz.samples import reconstruct as _reconstruct

Images = Union[str, Path, Sequence[Union[str, Path]], Tensor]


def pretrain(*overrides: str, config: Optional[str | Path] = None) -> Path:
    """Pretrain a run as ``maelab pretrain [-c config] key=value ...`` does; returns its run directory."""
    return _pretrain(load_config(config, list(overrides)))


def open_run(run_dir: str | Path, checkpoint: Optional[str | Path] = None, device: str = "cpu") -> LoadedRun:
    """The run's config and MAE (eval mode) from its last checkpoint (or ``checkpoint``) on ``device``.
    Raises UserError for a missing run or checkpoint."""
    return load_run(run_dir, checkpoint, device=device)


def load_images(images: Images, size: int) -> Tensor:
    """Image files (one path or several) -> uint8 [N, size, size, 3], decoded as the folder dataset decodes
    (8-bit RGB, stretched to a square); a uint8 tensor [N, H, W, 3] passes through. Raises DataError for a file
    that cannot be decoded."""
    if isinstance(images, Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise UserError(f"images as a tensor must be uint8 [N, H, W, 3], not {images.dtype} "
                            f"{list(images.shape)}: load files with maelab.api.load_images")
        return images
    paths = [images] if isinstance(images, (str, Path)) else list(images)
    return torch.from_numpy(np.stack([decode_image(Path(p), size) for p in paths]))


def _normalizer(run: LoadedRun) -> Normalizer:
    data = run.dataset()  # the run's own per-channel mean and std
    return Normalizer(data.mean, data.std, run.device)


def reconstruct(run: LoadedRun, images: Images, ratio: float = 0.75, seed: int = 0) -> Reconstruction:
    """Mask ``images`` at ``ratio`` (a mask drawn from ``seed``) and reconstruct them with the run's MAE.
    Returns original, masked and reconstructed pixels [N, 3, S, S] in [0, 1] (S: the model's image size) and
    the mask [N, L] (1 = masked)."""
    if not 0.0 <= ratio <= 1.0:
        raise UserError(f"mask ratio {ratio} is outside [0, 1]: give e.g. ratio=0.75")
    size = run.model.spec.img_size
    return _reconstruct(run.model, pixels(load_images(images, size), size), _normalizer(run), ratio, seed)


def features(run: LoadedRun, images: Images, layer: int | str = FINAL, pool: str = "mean") -> Tensor:
    """Pooled features of whole images: [N, D] float32. ``layer``: "final" (the encoder's output after its
    final norm) or a block number 1..depth (that block's raw output, timm's ``forward_intermediates``);
    ``pool``: "mean" over the patch tokens or "cls". Raises UserError for a block outside 1..depth."""
    depth = run.model.spec.depth
    name = layer if layer == FINAL else f"block{layer}"
    if name != FINAL and not (isinstance(layer, int) and 1 <= layer <= depth):
        raise UserError(f"layer={layer!r}: give 'final' or a block number 1..{depth}")
    if pool not in ("mean", "cls"):
        raise UserError(f"pool={pool!r}: give 'mean' or 'cls'")
    data = run.dataset()
    x = load_images(images, run.model.spec.img_size)
    return extract_layers(run.model.encoder, x.to(run.device), run.model.spec.img_size, data.mean, data.std,
                          [(name, pool)])[(name, pool)]


def probe(run_dir: str | Path, *overrides: str) -> dict[str, Any]:
    """The linear probe of ``maelab probe RUN key=value ...`` (written to RUN/eval/probe.json too); returns its
    result: ``top1`` (final layer), ``best`` and every protocol asked for by ``probe.layers``."""
    return run_probe(run_dir, list(overrides))[1]


def attention(run: LoadedRun, images: Images) -> Tensor:
    """The last block's cls-token attention to each patch, per head: [N, heads, grid, grid] float32."""
    size = run.model.spec.img_size
    return cls_attention_maps(run.model, pixels(load_images(images, size), size), _normalizer(run))


__all__ = ["attention", "features", "load_images", "open_run", "pretrain", "probe", "reconstruct"]
