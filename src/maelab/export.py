"""Export a run's encoder as safetensors (no pickle) with its architecture and normalisation as JSON beside it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

from safetensors.torch import load_file, save_file

from maelab.engine.loading import load_run
from maelab.errors import UserError, require_folder
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
    encoder = ViTEncoder(spec.img_size, spec.patch_size, spec.embed_dim, spec.depth, spec.num_heads, spec.mlp_dim,
                         registers=spec.registers, kernels=kernels)
    encoder.load_state_dict(upgrade_state_dict(load_file(str(weights))))  # an older export's names too
    return encoder.eval(), info
