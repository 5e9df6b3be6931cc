"""Configuration: nested dataclasses are the single source of truth.

YAML files give defaults and dotted overrides (``optim.lr=1e-3``) win. Parsing,
merging and type checking are done by OmegaConf's structured configs; this
module adds the value checks (``__post_init__``), a nearest-key suggestion for
typos, and conversion of every OmegaConf error into one clear ``ConfigError``.

The sections live in ``data.py`` (data, aug), ``training.py`` (model, mask, optim, train, gan) and
``evaluation.py`` (probe, knn, finetune, recon, eval); ``loading.py`` holds the whole :class:`Config` and
``load_config``.
"""

from maelab.config.data import CIFAR10_MD5, CIFAR10_URL, AugConfig, DataConfig
from maelab.config.evaluation import (
    PROBE_LAYERS_HELP,
    EvalConfig,
    FinetuneConfig,
    KnnConfig,
    KnnDataConfig,
    ProbeConfig,
    ReconConfig,
    probe_layers,
)
from maelab.config.loading import (
    Config,
    _all_keys,
    load_config,
    persisted,
    read_yaml_mapping,
    save_config,
    to_dict,
    whole_step_conflicts,
)
from maelab.config.training import (
    GAN_LOSSES,
    GanConfig,
    MaskConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

__all__ = ["CIFAR10_MD5", "CIFAR10_URL", "GAN_LOSSES", "PROBE_LAYERS_HELP", "AugConfig", "Config", "DataConfig",
           "EvalConfig", "FinetuneConfig", "GanConfig", "KnnConfig", "KnnDataConfig", "MaskConfig", "ModelConfig",
           "OptimConfig", "ProbeConfig", "ReconConfig", "TrainConfig", "_all_keys", "load_config",
           "persisted", "probe_layers", "read_yaml_mapping", "save_config", "to_dict", "whole_step_conflicts"]
