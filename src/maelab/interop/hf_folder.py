"""HF folders on disk: write one that transformers' ``from_pretrained`` loads, read one saved by transformers.

A ``ViTMAEForPreTraining`` folder holds config.json (model_type "vit_mae") and model.safetensors, decoder
included; a ``ViTModel`` folder (model_type "vit") the encoder alone. maelab adds preprocessor_config.json (a
``ViTImageProcessor`` with the run's size and per-channel mean/std, so that ``AutoImageProcessor`` prepares images
as maelab did) and maelab.json (where the weights came from).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from maelab.errors import UserError
from maelab.interop.hf import from_hf, hf_mae_config, hf_vit_config, hub_names, pos_embed_order_of, to_hf
from maelab.presets import ModelSpec

CONFIG, WEIGHTS = "config.json", "model.safetensors"
PREPROCESSOR, PROVENANCE = "preprocessor_config.json", "maelab.json"
KINDS = {"vit_mae": "vit.", "vit": ""}  # model_type -> the encoder's name prefix in the weights


def preprocessor_config(img_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> dict:
    """A ``ViTImageProcessor``'s config: resize to ``img_size`` (bilinear, as maelab's evaluation transform),
    scale to [0, 1], standardise with the run's per-channel mean and std."""
    return {"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": img_size,
            "width": img_size}, "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": list(mean), "image_std": list(std)}


def write_hf_folder(out: Path, state: dict[str, Tensor], spec: ModelSpec, kind: str, norm_pix_loss: bool,
                    mask_ratio: float, mean: tuple[float, ...], std: tuple[float, ...], provenance: dict) -> Path:
    """Write the MAE ``state`` (maelab's names) as an HF folder of ``kind`` "vit_mae" or "vit"; returns ``out``."""
    config = hf_mae_config(spec, norm_pix_loss, mask_ratio) if kind == "vit_mae" else hf_vit_config(spec)
    out.mkdir(parents=True, exist_ok=True)
    save_file(to_hf(state, spec, KINDS[kind], decoder=kind == "vit_mae"), str(out / WEIGHTS), {"format": "pt"})
    (out / CONFIG).write_text(json.dumps(config, indent=2))
    (out / PREPROCESSOR).write_text(json.dumps(preprocessor_config(spec.img_size, mean, std), indent=2))
    (out / PROVENANCE).write_text(json.dumps(provenance, indent=2))
    return out


@dataclass(frozen=True)
class HFFolder:
    """An HF folder opened for import: a ViTMAEForPreTraining (encoder + decoder), a ViTMAEModel or a ViTModel
    (encoder only). Which one is read from the weights' names: the config's model_type says vit_mae for both of
    the first two."""

    path: Path
    config: dict[str, Any]
    names: frozenset[str]  # the tensors in model.safetensors (the hub's names)

    @property
    def prefix(self) -> str:
        """The encoder's name prefix: "vit." inside a ViTMAEForPreTraining, "" in a ViTMAEModel or ViTModel."""
        return "vit." if "vit.embeddings.cls_token" in self.names else ""

    @property
    def has_decoder(self) -> bool:
        return "decoder.decoder_embed.weight" in self.names

    def spec_fields(self) -> dict[str, Any]:
        """The ModelSpec fields this folder fixes (the decoder's only when it has one), positions' layout included."""
        c = self.config
        fields = {"img_size": _square(c["image_size"], "image_size"),
                  "patch_size": _square(c["patch_size"], "patch_size"),
                  "embed_dim": c["hidden_size"], "depth": c["num_hidden_layers"], "num_heads": c["num_attention_heads"],
                  "mlp_dim": c["intermediate_size"], "norm_eps": float(c.get("layer_norm_eps", 1e-12)), "registers": 0}
        if self.has_decoder:
            fields.update(decoder_embed_dim=c["decoder_hidden_size"], decoder_depth=c["decoder_num_hidden_layers"],
                          decoder_num_heads=c["decoder_num_attention_heads"],
                          decoder_mlp_dim=c["decoder_intermediate_size"])
        name = f"{self.prefix}embeddings.position_embeddings"
        if name not in self.names:
            raise UserError(f"{self.path / WEIGHTS} has no {name}: the folder is not a ViTMAE/ViT of transformers")
        with safe_open(str(self.path / WEIGHTS), "pt") as f:
            table = f.get_tensor(name)
        grid = fields["img_size"] // fields["patch_size"]
        fields["pos_embed_order"] = pos_embed_order_of(table, grid, f"in {self.path / WEIGHTS}")
        return fields

    def state_dict(self, spec: ModelSpec) -> dict[str, Tensor]:
        """The weights in maelab's names (``encoder.*``, and ``decoder.*`` when the folder has one) for the
        architecture ``spec`` (which :meth:`spec_fields` must have made)."""
        tensors = hub_names(load_file(str(self.path / WEIGHTS)))
        return from_hf(tensors, spec, self.prefix, decoder=self.has_decoder)


def open_hf_folder(path: str | Path) -> HFFolder:
    """Open an HF ViTMAE/ViT folder; a UserError names what is missing or unsupported."""
    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise UserError(f"model.init_from={path} is not an HF model folder (it needs {CONFIG} and {WEIGHTS}, as "
                        "save_pretrained writes them): give the folder of a ViTMAE or ViT model")
    config = json.loads((path / CONFIG).read_text())
    if config.get("model_type") not in KINDS:
        raise UserError(f"{path / CONFIG} has model_type {config.get('model_type')!r}: maelab imports vit_mae "
                        "(ViTMAEForPreTraining, ViTMAEModel) and vit (ViTModel) folders")
    unsupported = {k: config.get(k, d) for k, d in (("num_channels", 3), ("qkv_bias", True), ("hidden_act", "gelu"))
                   if config.get(k, d) != d}
    if unsupported:
        raise UserError(f"{path / CONFIG} sets {unsupported}: maelab's ViT has 3 channels, qkv biases and exact GELU")
    with safe_open(str(path / WEIGHTS), "pt") as f:
        names = frozenset(hub_names(dict.fromkeys(f.keys())))
    return HFFolder(path, config, names)


def _square(value: Any, key: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise UserError(f"config.json's {key} is {value}: maelab's ViT takes square images and patches")
        value = value[0]
    return int(value)


def spec_with(spec: ModelSpec, fields: dict[str, Any]) -> ModelSpec:
    """``spec`` with ``fields`` applied."""
    return replace(spec, **fields)


__all__ = ["HFFolder", "open_hf_folder", "preprocessor_config", "spec_with", "write_hf_folder"]
