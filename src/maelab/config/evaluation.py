"""The config sections of the evaluations: probe, k-NN, fine-tuning, reconstruction, and when they run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from maelab.config.checks import _choice, _positive
from maelab.errors import ConfigError

PROBE_LAYERS_HELP = ("use last (the final-normed output), lastK (the last K blocks concatenated, e.g. last4), all "
                     "(every block alone, the concatenations and last), or block numbers such as [4,5,6] or 4,5,6 "
                     "(1 = the first block; several are concatenated)")


def probe_layers(value: Any) -> str:
    """``probe.layers`` in its one written form: ``last``, ``all``, ``lastK`` or sorted block numbers ``"4,5,6"``.

    Takes what YAML or an override gives: a name, an int, a list of ints or a comma-separated string. Raises
    ConfigError for anything else; whether the blocks exist is checked against the model (``eval.protocols``).
    """
    if isinstance(value, str) and (value in ("last", "all") or re.fullmatch(r"last[1-9][0-9]*", value)):
        return value
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    try:
        blocks = sorted({int(str(v).strip()) for v in items if not isinstance(v, (bool, float))})
    except ValueError:
        blocks = []
    if not blocks or any(isinstance(v, (bool, float)) for v in items) or blocks[0] < 1:
        raise ConfigError(f"probe.layers={value!r} is not valid: {PROBE_LAYERS_HELP}")
    return ",".join(map(str, blocks))


@dataclass
class ProbeConfig:
    """Linear probe on frozen features: BatchNorm1d(affine=False) + Linear, as the MAE paper (docs/evaluation.md).

    ``layers`` chooses the features: ``last`` (default) the encoder's final-normed output; block numbers are the
    raw block outputs (before the final norm), concatenated when several; ``all`` probes each of them.
    """

    # last | lastK (e.g. last4) | all | block numbers [4,5,6] or "4,5,6"; written back as "4,5,6"
    layers: Any = "last"
    pool: str = "mean"  # mean (of the patch tokens) | cls | both (mean and cls concatenated: 2 x embed_dim)
    epochs: int = 50
    batch_size: int = 256
    optimizer: str = "sgd"  # sgd (momentum 0.9, the Keras probe) | adamw (the issue-13 reference: lr 1e-3, wd 1e-4)
    lr: float = 0.1  # peak lr, cosine decay to 0 per step (Keras probe: SGD lr 0.1)
    weight_decay: float = 0.0
    augment: bool = False  # Keras-style probe: crop + flip, features re-extracted every epoch (slow, not cached)

    def __post_init__(self) -> None:
        self.layers = probe_layers(self.layers)
        _choice("probe.pool", self.pool, ("mean", "cls", "both"))
        _choice("probe.optimizer", self.optimizer, ("sgd", "adamw"))
        for name in ("epochs", "batch_size", "lr"):
            _positive(f"probe.{name}", getattr(self, name))
        _positive("probe.weight_decay", self.weight_decay, allow_zero=True)
        if self.batch_size < 2:
            raise ConfigError(f"probe.batch_size={self.batch_size} is too small: the probe's BatchNorm needs at least "
                              "2 images per batch to normalise; give 2 or more (default 256)")


@dataclass
class KnnConfig:
    """Weighted k-NN on L2-normalised features (cosine similarity, exp(sim / T) votes, as InstDisc/DINO)."""

    k: int = 20
    temperature: float = 0.07
    pool: str = "mean"  # mean | cls

    def __post_init__(self) -> None:
        _positive("knn.k", self.k)
        _positive("knn.temperature", self.temperature)
        _choice("knn.pool", self.pool, ("mean", "cls"))


@dataclass
class FinetuneConfig:
    """Supervised fine-tuning of encoder + head (also the from-scratch baseline), MAE's recipe."""

    epochs: int = 100
    batch_size: int = 256
    base_lr: float = 1e-3  # peak lr = base_lr * batch_size / 256 ...
    lr: Optional[float] = None  # ... unless given here
    min_lr: float = 1e-6
    warmup_fraction: float = 0.05
    weight_decay: float = 0.05
    layer_decay: float = 0.75  # layer-wise lr decay (1.0 = off)
    drop_path: float = 0.1
    label_smoothing: float = 0.1
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) of cutmix; 0 = off (with both on, each batch picks one)
    aug: str = "mae"  # augmentation preset for fine-tuning: none | mae | keras
    pool: str = "mean"  # mean (+ LayerNorm) | cls
    grad_clip: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "base_lr", "lr", "grad_clip"):
            _positive(f"finetune.{name}", getattr(self, name))
        for name in ("min_lr", "weight_decay", "mixup", "cutmix"):
            _positive(f"finetune.{name}", getattr(self, name), allow_zero=True)
        if not 0 < self.layer_decay <= 1:
            raise ConfigError(f"finetune.layer_decay={self.layer_decay} must be in (0, 1]")
        for name in ("drop_path", "label_smoothing", "warmup_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"finetune.{name}={getattr(self, name)} must be in [0, 1)")
        _choice("finetune.aug", self.aug, ("none", "mae", "keras"))
        _choice("finetune.pool", self.pool, ("mean", "cls"))


@dataclass
class ReconConfig:
    """Reconstruction quality on the test set at a fixed ratio and mask seed (comparable across runs)."""

    ratio: float = 0.75
    mask_seed: int = 0
    limit: Optional[int] = None  # a class-balanced subset of the test set; None = all of it

    def __post_init__(self) -> None:
        if not 0 <= self.ratio <= 1:
            raise ConfigError(f"recon.ratio={self.ratio} is outside [0, 1]: use e.g. recon.ratio=0.75")
        _positive("recon.limit", self.limit)


@dataclass
class KnnDataConfig:
    """The labelled data the k-NN monitor (eval.knn_every) measures on; unset (name and root null): the run's own.

    Pretrain on an unlabeled folder, watch the k-NN top-1 on a labelled one (lightly's k-NN callback likewise
    takes any labelled loader)."""

    # The words of the data section (data.name, data.root, data.limit_*) one level down, beside eval.knn_every: who
    # points pretraining at a folder with data.root knows how to point the monitor at another. How images are read
    # (data.image_size, data.cache_dir, data.download, data.max_memory_gib) stays the data section's.
    name: Optional[str] = None  # cifar10 | synthetic | props | folder; null: folder when root is set, else the run's
    root: Optional[str] = None  # as data.root: a labelled folder holds train/<class>/ and test/<class>/
    limit_train: Optional[int] = None  # the bank: a seeded, class-balanced subset of its training set
    limit_test: Optional[int] = None  # the queries: a class-balanced subset of its test set

    def __post_init__(self) -> None:
        if self.name is not None:
            _choice("eval.knn_data.name", self.name, ("cifar10", "synthetic", "props", "folder"))
        if self.name == "folder" and not self.root:
            raise ConfigError("eval.knn_data.name=folder needs eval.knn_data.root: a labelled folder holding "
                              "train/<class>/ and test/<class>/")
        _positive("eval.knn_data.limit_train", self.limit_train)
        _positive("eval.knn_data.limit_test", self.limit_test)

    @property
    def other(self) -> bool:
        """Whether it names other data than the run's (a name or a root is set)."""
        return self.name is not None or bool(self.root)


@dataclass
class EvalConfig:
    """Shared evaluation settings."""

    batch_size: int = 500  # feature-extraction batch
    knn_every: int = 0  # k-NN monitor during pretraining every N epochs (0 = off), logged as knn_top1
    # the monitor's labelled data (default: the run's own): eval.knn_data.root=DIR pretrains on data.root and
    # measures on DIR's train/ (the bank) and test/ (the queries)
    knn_data: KnnDataConfig = field(default_factory=KnnDataConfig)
    # probe and knn keep the pooled features of each checkpoint in RUN_DIR/eval/cache (float32; not under torchrun)
    feature_cache: bool = True

    def __post_init__(self) -> None:
        _positive("eval.batch_size", self.batch_size)
        _positive("eval.knn_every", self.knn_every, allow_zero=True)
