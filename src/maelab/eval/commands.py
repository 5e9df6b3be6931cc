"""The evaluation commands: open a run, evaluate, write RUN_DIR/eval/<name>.json (what the ablation reads).

``checkpoint``: a file, or ``epoch:N`` (the checkpoint kept after N epochs); the result of a checkpoint other than
last.pt is written to RUN_DIR/eval/<name>@<its stem>.json (``probe@epoch_0010.json``), beside last.pt's; a result
on other data than the run's own (``data.*`` overrides) to RUN_DIR/eval/<name>@<data tag>.json
(``knn@test1000.json``; :mod:`maelab.eval.data_tag`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch

from maelab.atomic_output import write_output
from maelab.config import Config, load_config, save_config, to_dict
from maelab.data import Dataset, load_dataset, require_labels, steps_per_epoch
from maelab.engine.device import configure_backends, resolve_device, resolve_precision
from maelab.engine.distributed import Dist, distributed
from maelab.engine.loading import LoadedRun, load_run
from maelab.engine.numerics import non_finite_tensors
from maelab.engine.run_dir import check_run_dir, default_run_dir, prepare_run_dir
from maelab.eval.data_tag import data_record, data_tag, join_tags
from maelab.eval.feature_cache import FeatureCache, cache_key, cache_root, cached_features
from maelab.eval.features import extract_layers
from maelab.eval.finetune import finetune
from maelab.eval.knn import knn_top1
from maelab.eval.linear_probe import train_probes
from maelab.eval.non_finite import features_undefined, undefined_finetune, undefined_protocols
from maelab.eval.protocols import FINAL, Feature, assemble, needed_features, probe_summary, protocols
from maelab.eval.recon import evaluate_reconstruction
from maelab.models import resolve_spec
from maelab.run_layout import FLOOR_SUFFIX, RunLayout
from maelab.seeds import derive_seed
from maelab.undefined import dumps, set_undefined


def write_result(run_dir: Path, name: str, result: dict[str, Any], tag: Optional[str] = None) -> Path:
    """Write ``RUN_DIR/eval/<name>.json`` atomically (``tag``: of a checkpoint other than last.pt,
    ``eval/<name>@<tag>.json``); returns its path.

    Standard JSON only: an undefined value must be null with its reason (``maelab.undefined``); a NaN or an
    infinity raises ValueError here, before anything is written. A full or read-only disk is one OutputError line
    (the result written before, if any, stays whole).
    """
    return write_output(RunLayout(run_dir).eval_result(name, tag=tag), dumps(result), "result",
                        "run the evaluation again (the results written before are kept)")


def _provenance(run: LoadedRun, section: str, data: Dataset, split: str = "test",
                images: Optional[int] = None) -> dict[str, Any]:
    """What every result records: the checkpoint, its step, the seed, the data it used (``split``, ``images``:
    what its numbers are measured on; :func:`maelab.eval.data_tag.data_record`) and the evaluation's config."""
    cfg = to_dict(run.cfg)
    return {"checkpoint": str(run.checkpoint) if run.checkpoint else "random-init", "step": run.step,
            "random_init": run.checkpoint is None, "seed": run.cfg.train.seed, "dataset": run.cfg.data.name,
            "data": data_record(data, run.cfg.data, data_tag(run.trained_data, run.cfg.data), split, images),
            section: cfg[section], "model": cfg["model"]}


def _open(run_dir: str | Path, overrides: list[str], checkpoint: Optional[str], random_init: bool,
          tag_data: bool) -> LoadedRun:
    """:func:`load_run`; its results are tagged by the checkpoint (other than last.pt) and, with ``tag_data``, by
    data other than the run's own (``eval/knn@test1000.json``: :mod:`maelab.eval.data_tag`). ``tag_data=False``
    (an ablation, whose suite fixes the evaluation data of every run) writes ``eval/<name>.json`` on any data."""
    run = load_run(run_dir, checkpoint, random_init=random_init, overrides=overrides)
    if tag_data:
        run.tag = join_tags(run.tag, data_tag(run.trained_data, run.cfg.data))
    return run


def _name(base: str, random_init: bool) -> str:
    return f"{base}{FLOOR_SUFFIX}" if random_init else base


def _extract(run: LoadedRun, data: Dataset, x: torch.Tensor, wanted: list[Feature],
             generator: Optional[torch.Generator] = None, dist: Optional[Dist] = None,
             split: Optional[str] = None) -> dict[Feature, torch.Tensor]:
    """Pooled features {(layer, pool): [N, D]} of x [N, H, W, 3] uint8 from the run's frozen encoder, one forward
    pass per image; augmented when a generator is given. ``split`` names the images in the progress shown (with
    train.progress, on rank 0, once it takes a while: :func:`maelab.progress.phase`); None shows none.

    Under torchrun (``dist``) each rank extracts its block of the images and every rank gets them all.
    """
    dist = dist or Dist()
    lo, hi = dist.block(len(x))
    shown = f"features of the {split} images" if split and run.cfg.train.progress and dist.is_main else None
    local = extract_layers(run.model.encoder, x[lo:hi], run.model.spec.img_size, data.mean, data.std, wanted,
                           run.cfg.eval.batch_size, aug=run.cfg.aug if generator is not None else None,
                           generator=generator, progress=shown)
    return {f: dist.gather_rows(t, len(x)) for f, t in local.items()}


def frozen_features(run: LoadedRun, data: Dataset, wanted: list[Feature], dist: Optional[Dist] = None
                    ) -> tuple[dict[Feature, torch.Tensor], dict[Feature, torch.Tensor], Optional[FeatureCache]]:
    """(train, test) features {(layer, pool): [N, D] float32} of the whole images, and the cache they came from.

    One process with ``eval.feature_cache`` on: read from / written to the run's feature cache
    (:mod:`maelab.eval.feature_cache`). Under torchrun the features are extracted in shards on every call and not
    cached: no rank waits on another's files, and the sharded extraction is what runs.
    """
    dist = dist or Dist()
    use = run.cfg.eval.feature_cache and not dist.enabled
    cache = FeatureCache(cache_root(run.run_dir), cache_key(run, data)) if use else None
    train, test = (cached_features(cache, split, wanted, len(x), run.device,
                                   lambda missing, x=x, split=split: _extract(run, data, x, missing, dist=dist,
                                                                              split=split))
                   for split, x in (("train", data.x_train), ("test", data.x_test)))
    return train, test, cache


def _to_rank_device(run: LoadedRun, dist: Dist) -> None:
    """Under torchrun on CUDA, move the run's model to this rank's GPU (its data follows run.device)."""
    run.device = dist.device(run.device)
    run.model.to(run.device)


def run_probe(run_dir: str | Path, overrides: list[str], checkpoint: Optional[str] = None,
              random_init: bool = False, tag_data: bool = True) -> tuple[Path, dict[str, Any]]:
    """Linear probes on the frozen encoder, one head per protocol of ``probe.layers`` -> RUN_DIR/eval/probe.json
    (and, for layers=all, RUN_DIR/figures/probe_by_depth.png).

    Features come from the run's feature cache, or from one forward pass per image (the augmented probe
    re-extracts every epoch and bypasses the cache). Under torchrun the features are extracted in shards and
    gathered; every rank trains the (small) heads on all of them, identically, and rank 0 writes the result.
    """
    run = _open(run_dir, overrides, checkpoint, random_init, tag_data)
    require_labels(run.cfg.data, "probe")
    cfg = run.cfg.probe
    chosen = protocols(cfg.layers, cfg.pool, run.model.spec.depth)  # a block out of range: refused before any work
    wanted = needed_features(chosen)
    with distributed(run.cfg.train.device) as dist:
        _to_rank_device(run, dist)
        data, start = dist.main_first(run.dataset), time.perf_counter()
        if cfg.augment:  # Keras-style: crop + flip features of the training images, re-extracted every epoch
            test, cache = _extract(run, data, data.x_test, wanted, dist=dist, split="test"), None
            gen = torch.Generator(device=run.device)

            def train(epoch: int) -> dict[str, torch.Tensor]:  # each rank augments its block with its own seed
                gen.manual_seed(derive_seed(run.cfg.train.seed, "probe-augment", epoch, dist.rank))
                feats = _extract(run, data, data.x_train, wanted, gen, dist)
                return {p.name: assemble(p, feats) for p in chosen}
        else:
            train_feats, test, cache = frozen_features(run, data, wanted, dist)
            train = {p.name: assemble(p, train_feats) for p in chosen}
        feature_seconds = time.perf_counter() - start
        test_in = {p.name: assemble(p, test) for p in chosen}
        bad = {p.name: why for p in chosen if (why := features_undefined(  # augmented: the test features tell
            run.model.encoder, *([] if cfg.augment else [train[p.name]]), test_in[p.name]))}
        good = {k: v for k, v in test_in.items() if k not in bad}  # the heads trained: on finite features only
        metrics = train_probes(train, data.y_train, good, data.y_test, data.num_classes, cfg, run.cfg.train.seed,
                               progress=run.cfg.train.progress and dist.is_main) if good else {}
        summary = undefined_protocols(probe_summary(
            chosen, {**metrics, **{k: {"top1": -1.0, "top5": -1.0} for k in bad}},
            {k: v.shape[1] for k, v in test_in.items()}, cfg, len(data.x_train), len(data.x_test)), chosen, bad)
        result = {**summary, "epochs": cfg.epochs, "pool": cfg.pool, "seconds": time.perf_counter() - start,
                  "feature_seconds": feature_seconds, "feature_cache": str(cache.dir) if cache else None,
                  "train_images": len(data.x_train), "test_images": len(data.x_test), **_provenance(run, "probe", data)}
        if cfg.layers == "all":  # matplotlib only then: its import is 1.2 s of every evaluation's start
            from maelab.viz.probe_plots import FIGURE_NAME, write_probe_by_depth

            result["figure"] = str(RunLayout(run.run_dir).figures_of(run.tag) / FIGURE_NAME)
        path = dist.main_only(write_result, run.run_dir, _name("probe", random_init), result, run.tag)
        if cfg.layers == "all":
            dist.main_only(write_probe_by_depth, run.run_dir, tag=run.tag,  # the floor on the same data
                           floor_tag=data_tag(run.trained_data, run.cfg.data))
        return path, result


def run_knn(run_dir: str | Path, overrides: list[str], checkpoint: Optional[str] = None,
            random_init: bool = False, tag_data: bool = True) -> tuple[Path, dict[str, Any]]:
    """Weighted k-NN on frozen final-normed features (``knn.pool``; feature cache) -> RUN_DIR/eval/knn.json."""
    run = _open(run_dir, overrides, checkpoint, random_init, tag_data)
    require_labels(run.cfg.data, "knn")
    cfg, data, start = run.cfg.knn, run.dataset(), time.perf_counter()
    top1, why = knn_accuracy(run, data)
    k = min(cfg.k, len(data.x_train))  # knn_predict votes with every training image when there are fewer than k
    result = {"top1": top1, "k": k, **({"k_requested": cfg.k} if k != cfg.k else {}), "temperature": cfg.temperature,
              "pool": cfg.pool,
              "seconds": time.perf_counter() - start, "train_images": len(data.x_train),
              "test_images": len(data.x_test), **_provenance(run, "knn", data)}
    if why:
        set_undefined(result, "top1", why)
    return write_result(run.run_dir, _name("knn", random_init), result, run.tag), result


def knn_accuracy(run: LoadedRun, data: Dataset) -> tuple[Optional[float], Optional[str]]:
    """k-NN top-1 (%) of the run's encoder: train-set features as the bank, test set as queries (cached features).
    Returns (top-1, None), or (None, why) when the features are not finite (:func:`features_undefined`)."""
    feature = (FINAL, run.cfg.knn.pool)
    train, test, _ = frozen_features(run, data, [feature])
    why = features_undefined(run.model.encoder, train[feature], test[feature])
    return (None, why) if why else (knn_top1(train[feature], test[feature], data, run.cfg.knn), None)


def run_recon(run_dir: str | Path, overrides: list[str], checkpoint: Optional[str] = None,
              random_init: bool = False, tag_data: bool = True) -> tuple[Path, dict[str, Any]]:
    """Reconstruction PSNR/SSIM/sharpness at a fixed ratio and mask seed -> RUN_DIR/eval/recon.json (on the test
    split; on the training images of an unlabeled folder, which has none: ``split`` in the result says which)."""
    run = _open(run_dir, overrides, checkpoint, random_init, tag_data)
    data, start = run.dataset(), time.perf_counter()
    metrics = evaluate_reconstruction(run.model, data, run.cfg.recon, run.cfg.eval.batch_size)
    result = {**metrics, "norm_pix_loss": run.cfg.model.norm_pix_loss, "seconds": time.perf_counter() - start,
              **_provenance(run, "recon", data, metrics["split"], metrics["images"])}
    return write_result(run.run_dir, _name("recon", random_init), result, run.tag), result


def run_finetune(run_dir: str | Path, overrides: list[str], checkpoint: Optional[str] = None,
                 random_init: bool = False, tag_data: bool = True) -> tuple[Path, dict[str, Any]]:
    """Fine-tune the pretrained encoder with labels -> RUN_DIR/eval/finetune.json."""
    run = _open(run_dir, overrides, checkpoint, random_init, tag_data)
    require_labels(run.cfg.data, "finetune")
    with distributed(run.cfg.train.device) as dist:  # under torchrun: DDP, see eval.finetune.finetune
        _to_rank_device(run, dist)
        state = None if random_init else run.model.encoder.state_dict()
        data = dist.main_first(run.dataset)
        if state is not None and non_finite_tensors(state):  # fine-tuning NaN weights trains nothing: say so
            result = undefined_finetune(run.model.encoder, data, run.cfg.finetune.epochs)
        else:
            result = _finetune(run.cfg, state, data, run.device, dist)
        result.update(_provenance(run, "finetune", data))
        return dist.main_only(write_result, run.run_dir, _name("finetune", random_init), result, run.tag), result


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
    require_labels(cfg.data, "scratch (training from scratch with labels)")
    with distributed(cfg.train.device) as dist:
        out_dir = cfg.out_dir or str(default_run_dir(f"{cfg.name}-scratch"))
        dist.main_only(check_run_dir, out_dir, cfg.name, cfg.overwrite)
        device = dist.device(resolve_device(cfg.train.device))
        configure_backends(device, cfg.train.tf32, cfg.train.deterministic)
        data = dist.main_first(load_dataset, cfg.data, cfg.train.seed,
                               progress=cfg.train.progress and dist.is_main).to(device)
        steps_per_epoch(len(data.x_train), cfg.finetune.batch_size, dist.world_size, key="finetune.batch_size")
        run_dir = dist.main_only(prepare_run_dir, out_dir, cfg.name, cfg.overwrite)  # checked: now replace
        dist.main_only(save_config, cfg, RunLayout(run_dir).config)
        result = _finetune(cfg, None, data, device, dist)
        result.update({"checkpoint": "random-init", "seed": cfg.train.seed, "dataset": cfg.data.name,
                       "finetune": to_dict(cfg)["finetune"], "model": to_dict(cfg)["model"]})
        return dist.main_only(write_result, run_dir, "scratch", result), result
