"""Configuration: nested dataclasses are the single source of truth.

YAML files give defaults and dotted overrides (``optim.lr=1e-3``) win. Parsing,
merging and type checking are done by OmegaConf's structured configs; this
module adds the value checks (``__post_init__``), a nearest-key suggestion for
typos, and conversion of every OmegaConf error into one clear ``ConfigError``.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from maelab.errors import ConfigError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not valid: use one of {', '.join(allowed)}")


def _positive(name: str, value: Optional[float], allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value} is not valid: it must be {bound}")


@dataclass
class DataConfig:
    """Which images to train on and where they are."""

    name: str = "cifar10"  # cifar10 | synthetic
    root: Optional[str] = None  # folder holding cifar-10-batches-py/ (else $MAELAB_DATA_DIR, else cache)
    download: bool = True  # download into the cache when the data is found nowhere
    url: str = CIFAR10_URL  # where the official archive is fetched from
    md5: str = CIFAR10_MD5  # checksum of the downloaded archive
    cache_dir: Optional[str] = None  # default ~/.cache/maelab
    limit_train: Optional[int] = None  # seeded, class-balanced subset of the training set
    limit_test: Optional[int] = None  # seeded, class-balanced subset of the test set
    synthetic_train: int = 10000  # size of the synthetic training set
    synthetic_test: int = 2000  # size of the synthetic test set

    def __post_init__(self) -> None:
        _choice("data.name", self.name, ("cifar10", "synthetic"))
        _positive("data.limit_train", self.limit_train)
        _positive("data.limit_test", self.limit_test)
        _positive("data.synthetic_train", self.synthetic_train)
        _positive("data.synthetic_test", self.synthetic_test)


@dataclass
class AugConfig:
    """Baseline augmentation, applied on the device with per-sample parameters."""

    preset: str = "mae"  # none | mae (random resized crop + flip) | keras (resize 52, crop 48, flip)
    crop_scale_min: float = 0.2  # mae: smallest crop area as a fraction of the image
    crop_scale_max: float = 1.0
    flip: float = 0.5  # probability of a horizontal flip

    def __post_init__(self) -> None:
        _choice("aug.preset", self.preset, ("none", "mae", "keras"))
        if not 0 < self.crop_scale_min <= self.crop_scale_max <= 1:
            raise ConfigError(
                "aug.crop_scale_min/max must satisfy 0 < min <= max <= 1, "
                f"got {self.crop_scale_min}/{self.crop_scale_max}"
            )
        if not 0 <= self.flip <= 1:
            raise ConfigError(f"aug.flip={self.flip} is a probability: use a value in [0, 1]")


@dataclass
class ModelConfig:
    """The MAE's architecture: a named preset, with any field overridable."""

    preset: str = "micro"  # micro | keras | vit_tiny_p4 | vit_small_p4
    img_size: Optional[int] = None
    patch_size: Optional[int] = None
    embed_dim: Optional[int] = None
    depth: Optional[int] = None
    num_heads: Optional[int] = None
    mlp_dim: Optional[int] = None
    decoder_embed_dim: Optional[int] = None
    decoder_depth: Optional[int] = None
    decoder_num_heads: Optional[int] = None
    decoder_mlp_dim: Optional[int] = None
    norm_pix_loss: bool = False
    loss: str = "mse"  # mse | l1, on masked patches only

    def __post_init__(self) -> None:
        from maelab.models.presets import PRESETS

        _choice("model.preset", self.preset, tuple(PRESETS))
        _choice("model.loss", self.loss, ("mse", "l1"))
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool):
                _positive(f"model.{f.name}", value)


@dataclass
class MaskConfig:
    """How much of each image is hidden from the encoder."""

    ratio: float = 0.75

    def __post_init__(self) -> None:
        if not 0 <= self.ratio <= 1:
            raise ConfigError(f"mask.ratio={self.ratio} is outside [0, 1]: use e.g. mask.ratio=0.75")


@dataclass
class OptimConfig:
    """AdamW with per-iteration linear warm-up then cosine decay."""

    epochs: int = 100
    batch_size: int = 256
    base_lr: float = 1.5e-4  # peak lr = base_lr * batch_size / 256 (MAE's rule) ...
    lr: Optional[float] = None  # ... unless the absolute peak lr is given here
    min_lr: float = 0.0
    warmup_fraction: float = 0.05  # linear warm-up over this fraction of the run (Keras: 0.15) ...
    warmup_epochs: Optional[float] = None  # ... unless a warm-up length in epochs is given here (MAE: 40 of 800)
    weight_decay: float = 0.05  # not applied to norms, biases and the pos/cls/mask tokens
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: Optional[float] = None  # max global grad norm; None = no clipping

    def __post_init__(self) -> None:
        _positive("optim.epochs", self.epochs)
        _positive("optim.batch_size", self.batch_size)
        _positive("optim.base_lr", self.base_lr)
        _positive("optim.lr", self.lr)
        _positive("optim.min_lr", self.min_lr, allow_zero=True)
        _positive("optim.warmup_epochs", self.warmup_epochs, allow_zero=True)
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"optim.warmup_fraction={self.warmup_fraction} must be in [0, 1)")
        _positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        _positive("optim.grad_clip", self.grad_clip)
        if self.warmup_epochs is not None and self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"optim.warmup_epochs={self.warmup_epochs} is not shorter than optim.epochs={self.epochs}: "
                "the run would never leave warm-up; lower it or use optim.warmup_fraction=0.15"
            )
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"optim.{name}={getattr(self, name)} must be in [0, 1)")


@dataclass
class TrainConfig:
    """Where and how the training runs."""

    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    compile: bool = False  # torch.compile the model (CUDA)
    seed: int = 0
    log_every: int = 20  # steps between metrics lines (and host syncs)
    threads: Optional[int] = None  # torch CPU threads; None = torch's default
    progress: bool = True  # show a progress bar
    tensorboard: bool = True  # write TensorBoard events to RUN_DIR/tensorboard
    stop_after_epochs: Optional[int] = None  # stop (with a checkpoint) after this many epochs; resume later

    def __post_init__(self) -> None:
        _choice("train.device", self.device, ("auto", "cpu", "cuda"))
        _choice("train.precision", self.precision, ("auto", "fp32", "bf16", "fp16"))
        _positive("train.log_every", self.log_every)
        _positive("train.threads", self.threads)
        _positive("train.stop_after_epochs", self.stop_after_epochs)


@dataclass
class GanConfig:
    """The adversarial loss: the MAE decoder is the generator, a discriminator judges real vs reconstructed."""

    enabled: bool = False


@dataclass
class Config:
    """Everything a pretraining run needs; written to RUN_DIR/config.yaml."""

    name: str = "mae"
    out_dir: Optional[str] = None  # default runs/<name>-<timestamp>
    overwrite: bool = False  # allow out_dir to hold another run (it is replaced)
    data: DataConfig = field(default_factory=DataConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gan: GanConfig = field(default_factory=GanConfig)


def _all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the config tree, e.g. ``optim.lr``."""
    keys = []
    for f in fields(cls):
        key = prefix + f.name
        keys.append(key)
        if is_dataclass(f.default_factory):
            keys.extend(_all_keys(f.default_factory, key + "."))
    return keys


def _nearest_key(key: str) -> str:
    candidates = _all_keys()
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.5)
    if not match:
        leaf = key.rsplit(".", 1)[-1]
        leaves = {k.rsplit(".", 1)[-1]: k for k in candidates}
        hit = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
        match = [leaves[hit[0]]] if hit else []
    return f" (did you mean '{match[0]}'?)" if match else ""


def _translate(err: OmegaConfBaseException, source: str) -> ConfigError:
    """One clear line for an OmegaConf error."""
    key = getattr(err, "full_key", None) or "?"
    first = str(err).splitlines()[0]
    if "not in" in first or type(err).__name__ == "ConfigKeyError":
        return ConfigError(f"unknown config key '{key}' in {source}{_nearest_key(key)}")
    return ConfigError(f"bad value for '{key}' in {source}: {first}")


def _parse_overrides(overrides: list[str]) -> Any:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not key=value: write e.g. optim.epochs=2")
    return OmegaConf.from_dotlist(list(overrides))


def load_config(path: Optional[str | Path] = None, overrides: list[str] | None = None,
                base: Optional[dict] = None) -> Config:
    """Build a validated Config: defaults < ``base`` dict < YAML file < dotted overrides."""
    merged = OmegaConf.structured(Config)
    layers: list[tuple[Any, str]] = []
    if base is not None:
        layers.append((OmegaConf.create(base), "the run's saved config"))
    if path is not None:
        layers.append((_read_yaml(Path(path)), str(path)))
    if overrides:
        layers.append((_parse_overrides(overrides), "the command-line overrides"))
    for layer, source in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            raise _translate(err, source) from None
    try:
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise _translate(err, "the config") from None


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: give a path such as configs/cifar10_keras.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML ({err.__class__.__name__}): fix its syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, not a {type(data).__name__}")
    return OmegaConf.create(data)


def to_dict(cfg: Config) -> dict:
    """A plain nested dict (for YAML and checkpoints)."""
    return asdict(cfg)


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config as YAML."""
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
