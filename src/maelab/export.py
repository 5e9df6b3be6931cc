"""Export a run's weights (safetensors, no pickle): maelab's own encoder file with its architecture and normalisation
as JSON beside it, an HF ViTMAE folder (decoder included) or ViT folder, or timm's VisionTransformer state dict."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

from safetensors.torch import load_file, save_file

from maelab.engine.loading import LoadedRun, load_run
from maelab.errors import UserError, require_folder
from maelab.interop.hf_folder import write_hf_folder
from maelab.interop.timm import timm_kwargs, to_timm
from maelab.models.kernels import TORCH, TorchKernels
from maelab.models.state_keys import upgrade_state_dict
from maelab.models.vit import ViTEncoder
from maelab.presets import ModelSpec
from maelab.run_layout import RunLayout


def export_encoder(run_dir: str | Path, out_dir: Optional[str | Path] = None,
                   checkpoint: Optional[str] = None) -> tuple[Path, Path]:
    """Write ``encoder.safetensors`` and ``encoder.json`` (spec, dataset mean/std, source checkpoint and step)
    into ``out_dir`` (default RUN_DIR/export; RUN_DIR/export/epoch_0010 for ``checkpoint="epoch:10"``, a kept
    checkpoint); returns both paths."""
    if out_dir:
        require_folder(out_dir, "--out")
    run = load_run(run_dir, checkpoint, device="cpu")
    out = Path(out_dir) if out_dir else require_folder(RunLayout(run.run_dir).export_of(run.tag), "the export folder")
    out.mkdir(parents=True, exist_ok=True)
    weights, meta = out / "encoder.safetensors", out / "encoder.json"
    tensors = {k: v.contiguous() for k, v in run.model.encoder.state_dict().items()}
    save_file(tensors, str(weights))
    data = run.dataset()
    meta.write_text(json.dumps({
        "spec": dataclasses.asdict(run.model.spec), "mean": list(data.mean), "std": list(data.std),
        "dataset": run.cfg.data.name, "checkpoint": str(run.checkpoint), "step": run.step,
    }, indent=2))
    return weights, meta


FORMATS = ("safetensors", "hf", "hf-vit", "timm")


def export(run_dir: str | Path, fmt: str = "safetensors", out_dir: Optional[str | Path] = None,
           checkpoint: Optional[str] = None) -> list[Path]:
    """Export the run's weights in ``fmt`` (one of FORMATS) into ``out_dir`` (default RUN_DIR/export for
    safetensors, RUN_DIR/export/<fmt> for the others; under export/epoch_0010/ for ``checkpoint="epoch:10"``);
    returns the files written.

    - ``hf``: a folder ``transformers.ViTMAEForPreTraining.from_pretrained`` loads (config.json, model.safetensors,
      preprocessor_config.json, maelab.json);
    - ``hf-vit``: the encoder as a folder ``transformers.ViTModel.from_pretrained(DIR, add_pooling_layer=False)``
      loads;
    - ``timm``: model.safetensors with timm's VisionTransformer names and maelab.json with the
      ``timm.create_model`` arguments.
    The positions written are the ones the weights were trained with (``model.pos_embed_order``). Raises UserError
    for a missing run or a run whose encoder has register tokens (neither HF nor timm format has them)."""
    if fmt == "safetensors":
        return list(export_encoder(run_dir, out_dir, checkpoint))
    if out_dir:
        require_folder(out_dir, "--out")
    run = load_run(run_dir, checkpoint, device="cpu")
    out = Path(out_dir) if out_dir else require_folder(RunLayout(run.run_dir).export_of(run.tag) / fmt,
                                                       "the export folder")
    spec, data = run.model.spec, run.dataset()
    provenance = {"exported_by": "maelab", "format": fmt, "run_dir": str(run.run_dir),
                  "checkpoint": str(run.checkpoint), "step": run.step, "dataset": run.cfg.data.name,
                  "mean": list(data.mean), "std": list(data.std), "spec": dataclasses.asdict(spec)}
    if fmt == "timm":
        return _export_timm(run, out, provenance)
    kind = "vit_mae" if fmt == "hf" else "vit"
    write_hf_folder(out, run.model.state_dict(), spec, kind, run.cfg.model.norm_pix_loss, run.cfg.mask.ratio,
                    data.mean, data.std, provenance)
    return sorted(p for p in out.iterdir() if p.is_file())


def _export_timm(run: LoadedRun, out: Path, provenance: dict) -> list[Path]:
    spec = run.model.spec
    tensors = to_timm(run.model.encoder.state_dict(), spec)
    out.mkdir(parents=True, exist_ok=True)
    weights, meta = out / "model.safetensors", out / "maelab.json"
    save_file(tensors, str(weights), {"format": "pt"})
    meta.write_text(json.dumps({**provenance, "timm_kwargs": timm_kwargs(spec)}, indent=2))
    return [weights, meta]


def load_encoder(weights: str | Path, meta: Optional[str | Path] = None,
                 kernels: TorchKernels = TORCH) -> tuple[ViTEncoder, dict]:
    """Rebuild the encoder from an export (no pickle involved); returns it (eval mode) and the JSON metadata.

    ``kernels``: PyTorch's ops by default, or a device's fast paths (``maelab.models.cpu.kernels_for("cpu")``:
    the same floats as the run's own encoder on the CPU)."""
    weights = Path(weights)
    meta_path = Path(meta) if meta else weights.with_suffix(".json")
    if not weights.is_file() or not meta_path.is_file():
        raise UserError(f"export not found ({weights}, {meta_path}): run `maelab export RUN_DIR` first")
    info = json.loads(meta_path.read_text())
    spec = ModelSpec(**info["spec"])
    encoder = ViTEncoder.from_spec(spec, kernels=kernels)
    encoder.load_state_dict(upgrade_state_dict(load_file(str(weights))))  # an older export's names too
    return encoder.eval(), info
