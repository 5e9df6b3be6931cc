"""The whole config (:class:`Config`), loaded from YAML files and ``key=value`` overrides, checked, and saved."""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from maelab.config.as_written import refuse_booleans_for_text
from maelab.config.data import AugConfig, DataConfig
from maelab.config.evaluation import EvalConfig, FinetuneConfig, KnnConfig, ProbeConfig, ReconConfig
from maelab.config.training import (
    GanConfig,
    MaskConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)
from maelab.errors import ConfigError, output_error


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
    eval: EvalConfig = field(default_factory=EvalConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    recon: ReconConfig = field(default_factory=ReconConfig)

    def __post_init__(self) -> None:
        if self.optim.accum_steps > 1 and self.gan.enabled:
            raise ConfigError(f"optim.accum_steps={self.optim.accum_steps} with gan.enabled=true is not supported "
                              "(the discriminator steps once per optimizer step, on one micro-batch's images): use "
                              "optim.accum_steps=1 with the GAN, or a larger optim.batch_size")
        if self.gan.enabled and self.gan.start_epoch >= self.optim.epochs:  # it would train as the plain MAE
            raise ConfigError(f"gan.start_epoch={self.gan.start_epoch} is after the last epoch (epoch "
                              f"{self.optim.epochs - 1} of optim.epochs={self.optim.epochs}, counted from 0): the "
                              "adversarial term would never run; lower gan.start_epoch, raise optim.epochs, or set "
                              "gan.enabled=false")
        if self.train.compile and self.train.compile_scope == "step":
            _check_whole_step(self)


def whole_step_conflicts(cfg: Config) -> list[str]:
    """The settings of ``cfg`` that the whole step compiled (``train.compile_scope=step``) cannot hold, as
    ``key=value`` strings (empty: it can compile this run's step)."""
    return [name for name, on in (
        ("gan.enabled=true", cfg.gan.enabled),
        (f"optim.accum_steps={cfg.optim.accum_steps}", cfg.optim.accum_steps > 1),
        ("mask.per_sample=true", cfg.mask.per_sample),  # per-sample counts size the input on the host
        ("train.precision=fp16", cfg.train.precision == "fp16"),  # the GradScaler decides on the host
        ("train.on_nan=skip", cfg.train.on_nan == "skip"),  # it sets and deletes found_inf on the optimizer per step
    ) if on]


def _check_whole_step(cfg: Config) -> None:
    """train.compile_scope=step compiles one plain step: the settings that add to it are refused by name."""
    conflicts = whole_step_conflicts(cfg)
    if conflicts:
        raise ConfigError(f"train.compile_scope=step compiles the plain step, without {', '.join(conflicts)}: "
                          "drop those settings or use train.compile_scope=model")


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
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except Exception:  # noqa: BLE001 - e.g. `gan=[1,2] gan.enabled=0`: OmegaConf fails inside; name the override
        for i, item in enumerate(overrides):
            try:
                OmegaConf.from_dotlist(list(overrides[:i + 1]))
            except Exception:  # noqa: BLE001
                before = " ".join(overrides[:i])
                raise ConfigError(f"override '{item}' cannot follow '{before}' (it sets a key inside a value that "
                                  "is not a section): give each setting once, as section.key=value") from None
        raise


def load_config(path: Optional[str | Path] = None, overrides: list[str] | None = None,
                base: Optional[dict] = None, overrides_from: str = "the command-line overrides") -> Config:
    """Build a validated Config: defaults < ``base`` dict < YAML file < dotted overrides (``overrides_from``: where
    they were written, for the errors)."""
    merged = OmegaConf.structured(Config)
    layers: list[tuple[Any, str]] = []
    if base is not None:
        layers.append((OmegaConf.create(base), "the run's saved config"))
    if path is not None:
        layers.extend(_yaml_layers(Path(path)))
    if overrides:
        layers.append((_parse_overrides(overrides), overrides_from))
    for layer, source in layers:
        refuse_booleans_for_text(OmegaConf.to_container(layer), source, Config)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            raise _translate(err, source) from None
    try:
        _reject_non_finite(OmegaConf.to_container(merged))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise _translate(err, "the config") from None


def _reject_non_finite(tree: Any, prefix: str = "") -> None:
    """No setting is NaN or infinite (the range checks of the sections cannot see NaN: every comparison with it is
    False); a ConfigError names the first such key."""
    for key, value in (tree.items() if isinstance(tree, dict) else []):
        name = f"{prefix}{key}"
        if isinstance(value, float) and not math.isfinite(value):
            default = _default_of(name)
            example = f" such as the default ({default})" if isinstance(default, (int, float)) else ""
            raise ConfigError(f"{name}={value} is not a finite number: give a finite number{example}")
        _reject_non_finite(value, f"{name}.")


def _default_of(name: str) -> Any:
    section, _, key = name.partition(".")
    return getattr(getattr(Config(), section), key, None) if key else getattr(Config(), section, None)


def _yaml_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Any, str]]:
    """A YAML file and the chain of files it extends with a top-level ``base: other.yaml`` (relative to it),
    the furthest base first, so that each file only states what differs from its base."""
    data = read_yaml_mapping(path)
    base = data.pop("base", None)
    if base is None:
        return [(OmegaConf.create(data), str(path))]
    base_path = (path.parent / str(base)).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ConfigError(f"config file {path} extends itself through 'base: {base}': break the cycle")
    return [*_yaml_layers(base_path, (*seen, path.resolve())), (OmegaConf.create(data), str(path))]


def read_yaml_mapping(path: Path, what: str = "config file", example: str = "configs/cifar10_keras.yaml") -> dict:
    """A YAML file holding a mapping (empty file: {}); a missing file, bad YAML or another type is one
    ConfigError line naming ``what`` and, for a missing file, an ``example`` path."""
    if not path.is_file():
        near = nearest_yaml(path)
        hint = f"did you mean {near}? " if near else ""
        raise ConfigError(f"{what} {path} does not exist: {hint}give a path such as {example}")
    try:
        data = load_yaml(path.read_text(), str(path))
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML ({err.__class__.__name__}): fix its syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of keys, not a {type(data).__name__}")
    return data


def nearest_yaml(path: Path) -> Optional[str]:
    """The YAML file nearest by name to a missing ``path`` (a typo: ``own_image_cpu.yaml``, or a name without its
    folder or suffix: ``own_images_cpu``), among those beside it and in ./configs; None when none is close."""
    folders = {path.parent, Path("configs")} if str(path.parent) != "." else {Path("."), Path("configs")}
    files = [f for folder in folders if folder.is_dir() for f in sorted(folder.glob("*.y*ml"))]
    by_name = {f.name: f for f in files} | {f.stem: f for f in files}
    close = difflib.get_close_matches(path.name, list(by_name), n=1, cutoff=0.8)
    return str(by_name[close[0]]) if close else None


MERGE_TAG = "tag:yaml.org,2002:merge"


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses a key given twice in one mapping, at any depth (PyYAML keeps the last one
    in silence). Anchors, aliases and merge keys (``<<: *defaults``) work as in SafeLoader: a key written beside a
    merge key overrides the merged one, which is no duplicate. Set ``where`` (the file) before loading."""

    where = "<string>"

    def construct_document(self, node: yaml.Node) -> Any:
        """Check every mapping of the document as written (before merge keys are expanded), then construct it.
        Raises ConfigError for a repeated key."""
        self._refuse_repeats(node, "", set())
        return super().construct_document(node)

    def _refuse_repeats(self, node: yaml.Node, prefix: str, seen: set[int]) -> None:
        """Walk ``node``'s tree once (an alias is the anchored node itself; ``seen`` stops recursive anchors)."""
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._refuse_repeats(item, f"{prefix}[{i}]", seen)
        elif isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = self._key_of(key_node)
                name = f"{prefix}.{key}" if prefix else str(key)
                if key is not None and key in lines:
                    raise ConfigError(f"{self.where}: key {name} is given twice (lines {lines[key]} and "
                                      f"{key_node.start_mark.line + 1}): keep one")
                if key is not None:
                    lines[key] = key_node.start_mark.line + 1
                self._refuse_repeats(value_node, name, seen)

    def _key_of(self, key_node: yaml.Node) -> Any:
        """The key a scalar key node constructs to (``1`` and ``0x1`` are one key, as in the dict); None for a merge
        key or a key that is not a hashable scalar (SafeLoader judges those)."""
        if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            return None
        key = self.construct_object(key_node)
        try:
            hash(key)
        except TypeError:
            return None
        return key


def load_yaml(text: str, where: str) -> Any:
    """The YAML document ``text`` read by :class:`UniqueKeyLoader`: ConfigError naming ``where`` (a file) for a key
    given twice in one mapping; yaml.YAMLError for text that is not YAML."""
    loader = UniqueKeyLoader(text)
    loader.where = where
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def to_dict(cfg: Config) -> dict:
    """A plain nested dict (for YAML and checkpoints)."""
    return asdict(cfg)


def persisted(cfg: Config) -> Config:
    """``cfg`` as a run keeps it (config.yaml, checkpoints): without the settings of one invocation
    (``train.stop_after_epochs``), so that a resumed run does not inherit them."""
    return replace(cfg, train=replace(cfg.train, stop_after_epochs=None))


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config, as the run keeps it (:func:`persisted`), as YAML (a folder that is full or not
    writable is one clear error)."""
    try:
        path.write_text(yaml.safe_dump(to_dict(persisted(cfg)), sort_keys=False))
    except OSError as err:
        raise output_error(err, path, "config", "run the command again") from None
