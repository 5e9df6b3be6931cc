"""Pretraining shared between suites (``maelab ablate SUITE --reuse OTHER_OUT``).

Two suites often hold the very same pretraining run: the CPU suite's baseline is the mask-ratio sweep's ratio
0.75 and the fine-tuning suite's pretrained encoder, seed for seed. With ``--reuse``, a run whose pretraining
config equals, setting for setting, that of a pretrained run of another ablation folder (the same seed
included) copies that run's checkpoints and training log instead of training again; its evaluations still run
in its own folder, with its own suite's evaluation settings. The run's ablate.json names the source, and the
report lists every reused run.

Only the settings that cannot change the trained weights are left out of the comparison: the run's name and
folder, and the settings that only the evaluations read (the probe, k-NN, fine-tuning and reconstruction
sections). Everything else (data, augmentation, model, mask, optimizer, train, GAN, eval) must match.
The sources are kept in OUT/reuse.json, so the workers, cluster jobs and a rerun of the command use them too.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import yaml

from maelab.ablate.results import SUITE_NAME, not_an_ablation, read_status
from maelab.atomic import write_text_atomic
from maelab.config import Config, load_config, to_dict
from maelab.config.loading import load_yaml, persisted, save_config
from maelab.engine.checkpoint import load_checkpoint, save_checkpoint
from maelab.errors import ConfigError, UserError
from maelab.run_layout import RunLayout

REUSE_NAME = "reuse.json"
EVALUATION_ONLY = ("probe", "knn", "finetune", "recon")  # config sections that pretraining never reads
RUN_ONLY = ("name", "out_dir", "overwrite")  # where and under which name: not what is trained


def check_sources(out: Path, sources: list[str]) -> list[Path]:
    """The ``--reuse`` folders, resolved (nothing is written). UserError: an empty name, OUT itself or a folder
    in it, a folder that does not exist or is not an ablation folder (a run folder names the ablation folder to
    give)."""
    resolved = []
    for given in sources:
        if not given.strip():
            raise UserError("--reuse was given an empty name: give the --out folder of an earlier `maelab ablate`")
        path, own = Path(given).resolve(), Path(out).resolve()
        if path == own or own in path.parents:
            where = "is" if path == own else "is inside"
            raise UserError(f"--reuse {given} {where} this ablation's own --out folder: give another suite's "
                            "folder, outside it")
        if not (path / SUITE_NAME).is_file():
            raise UserError(f"--reuse {not_an_ablation(path, given)}")
        resolved.append(path)
    return resolved


def write_sources(out: Path, sources: list[Path]) -> None:
    """OUT/reuse.json: the folders to reuse from, replacing the list a former invocation gave."""
    write_text_atomic(Path(out) / REUSE_NAME, json.dumps([str(p) for p in sources], indent=2))


def read_sources(out: Path) -> list[Path]:
    """The folders OUT/reuse.json names (none when the suite was never run with --reuse)."""
    path = Path(out) / REUSE_NAME
    return [Path(p) for p in json.loads(path.read_text())] if path.is_file() else []


def pretraining_key(cfg: Config) -> dict[str, Any]:
    """The settings that decide a pretraining run's weights: the persisted config without its name, folder and
    evaluation-only sections."""
    kept = to_dict(persisted(cfg))
    return {k: v for k, v in kept.items() if k not in RUN_ONLY + EVALUATION_ONLY}


def find_pretrained(cfg: Config, sources: list[Path]) -> Optional[Path]:
    """The first run folder of ``sources`` that finished its pretraining (all ``optim.epochs``) with the same
    :func:`pretraining_key` as ``cfg``, or None. A source run whose files cannot be read is skipped with a
    warning naming it."""
    wanted = pretraining_key(cfg)
    for source in sources:
        for config_file in sorted(source.glob("runs/*/seed*/config.yaml")):
            run_dir = config_file.parent
            try:
                if not read_status(run_dir).get("pretrained") or not RunLayout(run_dir).checkpoint.is_file():
                    continue
                saved = _saved_config(config_file)
                if saved is None or pretraining_key(saved) != wanted:
                    continue
                epoch = load_checkpoint(RunLayout(run_dir).checkpoint, needs=("epoch",))["epoch"]
            except (UserError, ValueError, OSError) as err:
                warn(f"--reuse: {run_dir} is skipped, its files cannot be read ({str(err).splitlines()[0]})")
                continue
            if epoch == cfg.optim.epochs:
                return run_dir
    return None


def count_matches(configs: list[Config], sources: list[Path]) -> int:
    """How many of ``configs`` (the runs left to do) :func:`find_pretrained` finds in ``sources``."""
    return sum(find_pretrained(cfg, sources) is not None for cfg in configs)


def copy_pretraining(source: Path, cfg: Config) -> str:
    """Copy ``source``'s checkpoints, training log, run_info.json and TensorBoard events into ``cfg.out_dir``
    (replacing a partial run there), each checkpoint and config.yaml rewritten with ``cfg`` (this run's name and
    folder). Returns the folder where the run was trained (``source``, or the run it was itself copied from)."""
    src, dst = RunLayout(source), RunLayout(cfg.out_dir)
    cfg = replace(cfg, overwrite=True)  # as a run the suite trains itself
    shutil.rmtree(dst.checkpoints, ignore_errors=True)
    dst.checkpoints.mkdir(parents=True)
    for checkpoint in sorted(src.checkpoints.glob("*.pt")):
        state = load_checkpoint(checkpoint)
        state["config"] = to_dict(persisted(cfg))
        save_checkpoint(state, dst.checkpoints / checkpoint.name)
    shutil.copyfile(src.metrics, dst.metrics)
    if src.run_info.is_file():  # where and how it was trained: the page's budget reads its device
        shutil.copyfile(src.run_info, dst.run_info)
    if src.tensorboard.is_dir():
        shutil.rmtree(dst.tensorboard, ignore_errors=True)
        shutil.copytree(src.tensorboard, dst.tensorboard)
    save_config(cfg, dst.config)
    return read_status(source).get("reused_from") or str(source)


def reuse_line(out: Path) -> str:
    """The report's sentence on the runs whose pretraining came from another folder (empty when none did); each
    source is named by its ablation folder's name and the run in it (``seed_cifar10_cpu/runs/baseline/seed0``)."""
    reused = []
    for status_file in sorted(Path(out).glob("runs/*/seed*/ablate.json")):
        source = read_status(status_file.parent).get("reused_from")
        if source:
            run = status_file.parent
            named = Path(*Path(source).parts[-4:]).as_posix()
            reused.append(f"{run.parent.name} seed {run.name.removeprefix('seed')} from `{named}`")
    if not reused:
        return ""
    return ("Pretraining reused (`--reuse`: the same pretraining config, seed included, already trained in another "
            f"ablation folder; the evaluations ran here): {'; '.join(reused)}.")


def warn(message: str) -> None:
    """One warning line on stderr (the run goes on)."""
    print(f"maelab: warning: {message}", file=sys.stderr)


def _saved_config(path: Path) -> Optional[Config]:
    """A run's config.yaml read through today's schema (keys added since take their defaults); None when it no
    longer loads (such a run is not reused)."""
    try:
        return load_config(None, [], base=load_yaml(path.read_text(), str(path)))
    except (ConfigError, yaml.YAMLError):
        return None
