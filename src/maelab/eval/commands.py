"""The evaluation commands: open a run, evaluate, write RUN_DIR/eval/<name>.json (what the ablation reads)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch

from maelab.atomic import write_text_atomic
from maelab.config import Config, load_config, save_config, to_dict
from maelab.data import Dataset, load_dataset, steps_per_epoch
from maelab.engine.device import resolve_device, resolve_precision
from maelab.engine.distributed import Dist, distributed
from maelab.engine.loading import LoadedRun, load_run
from maelab.engine.run_dir import CONFIG_NAME, check_run_dir, default_run_dir, prepare_run_dir
from maelab.eval.features import extract_features
from maelab.eval.finetune import finetune
from maelab.eval.knn import encoder_knn_top1
from maelab.eval.linear_probe import train_probe
from maelab.eval.recon import evaluate_reconstruction
from maelab.models import resolve_spec
from maelab.undefined import dumps


def write_result(run_dir: Path, name: str, result: dict[str, Any]) -> Path:
    """Write ``RUN_DIR/eval/<name>.json`` atomically; returns its path.

    Standard JSON only: an undefined value must be null with its reason (``maelab.undefined``); a NaN or an
    infinity raises ValueError here, before anything is written.
    """
    return write_text_atomic(Path(run_dir) / "eval" / f"{name}.json", dumps(result))


def _provenance(run: LoadedRun, section: str) -> dict[str, Any]:
    """What every result records: the checkpoint, its step, the seed and the evaluation's config."""
    cfg = to_dict(run.cfg)
    return {"checkpoint": str(run.checkpoint) if run.checkpoint else "random-init", "step": run.step,
            "random_init": run.checkpoint is None, "seed": run.cfg.train.seed, "dataset": run.cfg.data.name,
            section: cfg[section], "model": cfg["model"]}


def _name(base: str, random_init: bool) -> str:
    return f"{base}_random_init" if random_init else base


def _extract(run: LoadedRun, data: Dataset, x: torch.Tensor, pool: str,
             generator: Optional[torch.Generator] = None, dist: Optional[Dist] = None) -> torch.Tensor:
    """Pooled features of x [N, H, W, 3] uint8 from the run's frozen encoder; augmented when a generator is given.

    Under torchrun (``dist``) each rank extracts its block of the images and every rank gets them all.
    """
    dist = dist or Dist()
    lo, hi = dist.block(len(x))
    local = extract_features(run.model.encoder, x[lo:hi], run.model.spec.img_size, data.mean, data.std, pool,
                             run.cfg.eval.batch_size, aug=run.cfg.aug if generator is not None else None,
                             generator=generator)
    return dist.gather_rows(local, len(x))


def _to_rank_device(run: LoadedRun, dist: Dist) -> None:
    """Under torchrun on CUDA, move the run's model to this rank's GPU (its data follows run.device)."""
    run.device = dist.device(run.device)
    run.model.to(run.device)


def run_probe(run_dir: str | Path, overrides: list[str], checkpoint: Optional[str] = None,
              random_init: bool = False) -> tuple[Path, dict[str, Any]]:
    """Linear probe on the frozen encoder -> RUN_DIR/eval/probe.json.

    Under torchrun the features are extracted in shards and gathered; every rank trains the (small) head on
    all of them, identically, and rank 0 writes the result.
    """
    run = load_run(run_dir, checkpoint, random_init=random_init, overrides=overrides)
    with distributed(run.cfg.train.device) as dist:
        _to_rank_device(run, dist)
        cfg, data, start = run.cfg.probe, dist.main_first(run.dataset), time.perf_counter()
        test = _extract(run, data, data.x_test, cfg.pool, dist=dist)
        if cfg.augment:  # Keras-style: crop + flip features of the training images, re-extracted every epoch
            gen = torch.Generator(device=run.device)

            def train(epoch: int) -> torch.Tensor:  # each rank augments its block with its own seed
                gen.manual_seed(run.cfg.train.seed * 1000 + epoch + dist.rank * 1_000_003)
                return _extract(run, data, data.x_train, cfg.pool, gen, dist)
        else:
            train = _extract(run, data, data.x_train, cfg.pool, dist=dist)
        metrics = train_probe(train, data.y_train, test, data.y_test, data.num_classes, cfg, run.cfg.train.seed)
        result = {**metrics, "epochs": cfg.epochs, "pool": cfg.pool, "seconds": time.perf_counter() - start,
                  "train_images": len(data.x_train), "test_images": len(data.x_test), **_provenance(run, "probe")}
        return dist.main_only(write_result, run.run_dir, _name("probe", random_init), result), result


def run_knn(run_dir: str | Path, overrides: list[str], checkpoint: Optional[str] = None,
            random_init: bool = False) -> tuple[Path, dict[str, Any]]:
    """Weighted k-NN on frozen features -> RUN_DIR/eval/knn.json."""
    run = load_run(run_dir, checkpoint, random_init=random_init, overrides=overrides)
    cfg, data, start = run.cfg.knn, run.dataset(), time.perf_counter()
    top1 = knn_accuracy(run, data)
    k = min(cfg.k, len(data.x_train))  # knn_predict votes with every training image when there are fewer than k
    result = {"top1": top1, "k": k, **({"k_requested": cfg.k} if k != cfg.k else {}), "temperature": cfg.temperature,
              "pool": cfg.pool,
              "seconds": time.perf_counter() - start, "train_images": len(data.x_train),
              "test_images": len(data.x_test), **_provenance(run, "knn")}
    return write_result(run.run_dir, _name("knn", random_init), result), result


def knn_accuracy(run: LoadedRun, data: Dataset) -> float:
    """k-NN top-1 (%) of the run's encoder: train-set features as the bank, test set as queries."""
    return encoder_knn_top1(run.model.encoder, data, run.model.spec.img_size, run.cfg.knn, run.cfg.eval.batch_size)


def run_recon(run_dir: str | Path, overrides: list[str], checkpoint: Optional[str] = None,
              random_init: bool = False) -> tuple[Path, dict[str, Any]]:
    """Reconstruction PSNR/SSIM/sharpness at a fixed ratio and mask seed -> RUN_DIR/eval/recon.json."""
    run = load_run(run_dir, checkpoint, random_init=random_init, overrides=overrides)
    start = time.perf_counter()
    metrics = evaluate_reconstruction(run.model, run.dataset(), run.cfg.recon, run.cfg.eval.batch_size)
    result = {**metrics, "norm_pix_loss": run.cfg.model.norm_pix_loss, "seconds": time.perf_counter() - start,
              **_provenance(run, "recon")}
    return write_result(run.run_dir, _name("recon", random_init), result), result


def run_finetune(run_dir: str | Path, overrides: list[str], checkpoint: Optional[str] = None,
                 random_init: bool = False) -> tuple[Path, dict[str, Any]]:
    """Fine-tune the pretrained encoder with labels -> RUN_DIR/eval/finetune.json."""
    run = load_run(run_dir, checkpoint, random_init=random_init, overrides=overrides)
    with distributed(run.cfg.train.device) as dist:  # under torchrun: DDP, see eval.finetune.finetune
        _to_rank_device(run, dist)
        state = None if random_init else run.model.encoder.state_dict()
        result = _finetune(run.cfg, state, dist.main_first(run.dataset), run.device, dist)
        result.update(_provenance(run, "finetune"))
        return dist.main_only(write_result, run.run_dir, _name("finetune", random_init), result), result


def _finetune(cfg: Config, encoder_state: Optional[dict], data: Dataset, device: torch.device,
              dist: Optional[Dist] = None) -> dict[str, Any]:
    precision = resolve_precision(cfg.train.precision, device)
    return finetune(resolve_spec(cfg.model), encoder_state, data, cfg.finetune, cfg.aug, cfg.train.seed, device,
                    precision, dist=dist)


def run_scratch(config_path: Optional[str], overrides: list[str]) -> tuple[Path, dict[str, Any]]:
    """Train the same ViT from random initialisation with labels (the report's "regular classification")
    into its own run directory -> RUN_DIR/eval/scratch.json."""
    return scratch_from_config(load_config(config_path, overrides))


def scratch_from_config(cfg: Config) -> tuple[Path, dict[str, Any]]:
    """``run_scratch`` for a built config (under torchrun: DDP, rank 0 writes)."""
    with distributed(cfg.train.device) as dist:
        out_dir = cfg.out_dir or str(default_run_dir(f"{cfg.name}-scratch"))
        dist.main_only(check_run_dir, out_dir, cfg.name, cfg.overwrite)
        device = dist.device(resolve_device(cfg.train.device))
        data = dist.main_first(load_dataset, cfg.data, cfg.train.seed).to(device)
        steps_per_epoch(len(data.x_train), cfg.finetune.batch_size, dist.world_size, key="finetune.batch_size")
        run_dir = dist.main_only(prepare_run_dir, out_dir, cfg.name, cfg.overwrite)  # checked: now replace
        dist.main_only(save_config, cfg, run_dir / CONFIG_NAME)
        result = _finetune(cfg, None, data, device, dist)
        result.update({"checkpoint": "random-init", "seed": cfg.train.seed, "dataset": cfg.data.name,
                       "finetune": to_dict(cfg)["finetune"], "model": to_dict(cfg)["model"]})
        return dist.main_only(write_result, run_dir, "scratch", result), result
