"""``model.init_from=DIR``: a pretraining run that starts from the weights of an HF ViTMAE (or ViT) folder.

The folder's config.json fixes the architecture: :func:`with_init_from` writes its sizes, LayerNorm epsilon and
position layout into the run's ``model`` section (so the run's config.yaml and checkpoints describe the network
without the folder), and :func:`load_init_weights` copies the weights in when the run starts (not on resume).
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from maelab.config import Config
from maelab.errors import ConfigError
from maelab.interop.hf_folder import open_hf_folder
from maelab.presets import resolve_spec


def with_init_from(cfg: Config) -> Config:
    """``cfg`` with the architecture of ``model.init_from``'s folder (unchanged without init_from).

    Raises ConfigError when a model.* field set in the config differs from the folder's (the weights fix it), and
    UserError for a folder maelab cannot read (see :func:`maelab.interop.hf_folder.open_hf_folder`)."""
    if not cfg.model.init_from:
        return cfg
    fields = open_hf_folder(cfg.model.init_from).spec_fields()
    clashes = [f"model.{k}={getattr(cfg.model, k)} (the folder's: {v})" for k, v in fields.items()
               if getattr(cfg.model, k) is not None and getattr(cfg.model, k) != v]
    if clashes:
        raise ConfigError(f"model.init_from={cfg.model.init_from} fixes the architecture, but the config sets "
                          f"{', '.join(clashes)}: drop those settings (the folder's config.json decides them)")
    return replace(cfg, model=replace(cfg.model, **fields))


def load_init_weights(model: nn.Module, cfg: Config) -> None:
    """Copy ``model.init_from``'s weights into the MAE ``model`` built from :func:`with_init_from`'s config: the
    encoder always, the decoder when the folder is a ViTMAE (a ViT folder leaves the decoder as initialised)."""
    folder = open_hf_folder(cfg.model.init_from)
    state = folder.state_dict(resolve_spec(cfg.model))
    missing, unexpected = model.load_state_dict(state, strict=False)
    expected_missing = [] if folder.has_decoder else [k for k in model.state_dict() if k.startswith("decoder.")]
    if unexpected or sorted(missing) != sorted(expected_missing):
        raise ConfigError(f"the weights of {folder.path} do not fit the MAE its config describes (missing "
                          f"{sorted(set(missing) - set(expected_missing))[:3]}, unexpected {unexpected[:3]})")


__all__ = ["load_init_weights", "with_init_from"]
