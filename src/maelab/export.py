"""Export a run's weights (safetensors, no pickle): maelab's own encoder file with its architecture and normalisation
as JSON beside it, an HF ViTMAE folder (decoder included) or ViT folder, or timm's VisionTransformer state dict."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from safetensors.torch import load_file, save_file
from torch import Tensor

from maelab import atomic
from maelab.atomic_output import make_folder, output_failure
from maelab.engine.loading import LoadedRun, load_run
from maelab.engine.numerics import non_finite_tensors
from maelab.errors import UserError, output_error, require_folder
from maelab.export_record import check_replaceable, record_export, remove_stale
from maelab.interop.hf_folder import write_hf_folder
from maelab.interop.timm import timm_kwargs, to_timm
from maelab.models.cpu import use_kernels
from maelab.models.cpu.choice import Choice
from maelab.models.state_keys import upgrade_state_dict
from maelab.models.vit import ViTEncoder
from maelab.presets import ModelSpec
from maelab.run_layout import RunLayout


def export_encoder(run_dir: str | Path, out_dir: Optional[str | Path] = None,
                   checkpoint: Optional[str] = None) -> tuple[Path, Path]:
    """Write ``encoder.safetensors`` and ``encoder.json`` (spec, dataset mean/std, source checkpoint and step)
    into ``out_dir`` (default RUN_DIR/export; RUN_DIR/export/epoch_0010 for ``checkpoint="epoch:10"``, a kept
    checkpoint); returns both paths."""
    weights, meta = _export_encoder(run_dir, out_dir, checkpoint)
    return weights, meta


def _export_encoder(run_dir: str | Path, out_dir: Optional[str | Path], checkpoint: Optional[str]) -> Written:
    if out_dir:
        require_folder(out_dir, "--out")
    run = load_run(run_dir, checkpoint, device="cpu")
    out = Path(out_dir) if out_dir else require_folder(RunLayout(run.run_dir).export_of(run.tag), "the export folder")
    tensors = finite_weights(run, {k: v.contiguous() for k, v in run.model.encoder.state_dict().items()})
    data = run.dataset()
    written = Written()
    with staged(out, written) as stage:
        save_file(tensors, str(stage / "encoder.safetensors"))
        (stage / "encoder.json").write_text(json.dumps({
            "spec": dataclasses.asdict(run.model.spec), "mean": list(data.mean), "std": list(data.std),
            "dataset": run.cfg.data.name, "checkpoint": str(run.checkpoint), "step": run.step,
        }, indent=2))
    return written


EXPORT_AGAIN = "run maelab export again (the files exported before are kept)"


class Written(list):
    """The files an export wrote (a list of paths, in name order); ``replaced``: those of them that replaced the
    files of an earlier maelab export."""

    replaced: list[Path]
    removed: list[Path]  # an earlier export's files this one does not write (export_record.remove_stale)

    def __init__(self) -> None:
        super().__init__()
        self.replaced, self.removed = [], []


@contextmanager
def staged(out: Path, written: Optional[Written] = None) -> Iterator[Path]:
    """A temporary folder inside ``out`` to write an export into: its files replace those of ``out`` (the others
    there stay) once every one of them is written, so an export is never half old and half new. A full or
    read-only disk (an OSError, or safetensors' I/O error) is one OutputError line; nothing of ``out`` changes.
    A file of ``out`` that the export would replace must be one an earlier maelab export wrote
    (:func:`maelab.export_record.check_replaceable`), else a UserError and nothing of ``out`` changes. ``written``
    is filled with the files written."""
    make_folder(out, "export folder", EXPORT_AGAIN)
    try:
        stage = Path(tempfile.mkdtemp(dir=out, prefix=".export-"))
    except OSError as err:
        raise output_error(err, out, "export", EXPORT_AGAIN) from None
    try:
        yield stage
        names = sorted(path.name for path in stage.iterdir())
        replaced = check_replaceable(out, names)
        record_export(out, names)  # first: a name it lists is maelab's, or is about to be
        for name in names:  # safetensors' save_file writes 0600 whatever the umask: the mode an open would give
            os.chmod(stage / name, atomic.FILE_MODE)
            os.replace(stage / name, out / name)
        removed = remove_stale(out, names)
        if written is not None:
            written.extend(out / name for name in names)
            written.replaced.extend(out / name for name in replaced)
            written.removed.extend(out / name for name in removed)
    except Exception as err:  # noqa: BLE001 - an I/O error becomes one line; any other propagates as it is
        failure = output_failure(err, out, "export", EXPORT_AGAIN)
        if failure is None:
            raise
        raise failure from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def finite_weights(run: LoadedRun, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """``tensors`` when each is finite; a UserError naming the NaN/inf ones (a NaN export loads without complaint
    and computes NaN)."""
    bad = non_finite_tensors(tensors)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise UserError(f"the checkpoint {run.checkpoint} holds NaN/inf weights ({shown}): there is nothing "
                        "sound to export; export an earlier checkpoint (--checkpoint epoch:N, train.keep_checkpoints) "
                        "or train again")
    return tensors


FORMATS = ("safetensors", "hf", "hf-vit", "timm")


def export(run_dir: str | Path, fmt: str = "safetensors", out_dir: Optional[str | Path] = None,
           checkpoint: Optional[str] = None) -> Written:
    """Export the run's weights in ``fmt`` (one of FORMATS) into ``out_dir`` (default RUN_DIR/export for
    safetensors, RUN_DIR/export/<fmt> for the others; under export/epoch_0010/ for ``checkpoint="epoch:10"``);
    returns the files written (a list; ``.replaced``: those that replaced an earlier export's).

    The folder may hold other files: they stay, and a file of the export's names there is replaced only when an
    earlier maelab export wrote it (recorded in the folder's ``.maelab-export.json``), else a UserError and
    nothing is written (:mod:`maelab.export_record`).

    - ``hf``: a folder ``transformers.ViTMAEForPreTraining.from_pretrained`` loads (config.json, model.safetensors,
      preprocessor_config.json, maelab.json);
    - ``hf-vit``: the encoder as a folder ``transformers.ViTModel.from_pretrained(DIR, add_pooling_layer=False)``
      loads;
    - ``timm``: model.safetensors with timm's VisionTransformer names and maelab.json with the
      ``timm.create_model`` arguments.
    The positions written are the ones the weights were trained with (``model.pos_embed_order``). Raises UserError
    for a missing run or a run whose encoder has register tokens (neither HF nor timm format has them)."""
    if fmt == "safetensors":
        return _export_encoder(run_dir, out_dir, checkpoint)
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
    state = run.model.state_dict() if kind == "vit_mae" else {f"encoder.{k}": v for k, v in
                                                              run.model.encoder.state_dict().items()}
    finite_weights(run, state)
    written = Written()
    with staged(out, written) as stage:
        write_hf_folder(stage, run.model.state_dict(), spec, kind, run.cfg.model.norm_pix_loss, run.cfg.mask.ratio,
                        data.mean, data.std, provenance)
    return written


def _export_timm(run: LoadedRun, out: Path, provenance: dict) -> Written:
    spec = run.model.spec
    tensors = to_timm(finite_weights(run, run.model.encoder.state_dict()), spec)
    written = Written()
    with staged(out, written) as stage:
        save_file(tensors, str(stage / "model.safetensors"), {"format": "pt"})
        (stage / "maelab.json").write_text(json.dumps({**provenance, "timm_kwargs": timm_kwargs(spec)}, indent=2))
    return written


def load_encoder(weights: str | Path, meta: Optional[str | Path] = None,
                 kernels: Optional[Choice] = None) -> tuple[ViTEncoder, dict]:
    """Rebuild the encoder from an export (no pickle involved); returns it (eval mode) and the JSON metadata.

    ``kernels``: PyTorch's ops by default (None), or the CPU's fast paths (a ``maelab.models.cpu.kernels_for``
    answer: the same floats as the run's own encoder on the CPU)."""
    weights = Path(weights)
    meta_path = Path(meta) if meta else weights.with_suffix(".json")
    if not weights.is_file() or not meta_path.is_file():
        raise UserError(f"export not found ({weights}, {meta_path}): run `maelab export RUN_DIR` first")
    info = json.loads(meta_path.read_text())
    spec = ModelSpec(**info["spec"])
    encoder = use_kernels(ViTEncoder.from_spec(spec), kernels)
    encoder.load_state_dict(upgrade_state_dict(load_file(str(weights))))  # an older export's names too
    return encoder.eval(), info
