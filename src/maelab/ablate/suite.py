"""An ablation suite: a base config, variants (sets of overrides), seeds, evaluations and the claims to judge.

A suite is a YAML file read into these dataclasses by OmegaConf (unknown keys and wrong types are one clear
error); every variant × seed config is built and validated before anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from maelab.ablate.results import FLOOR, SCRATCH, ZERO_PRED
from maelab.config import Config, DataConfig, load_config, read_yaml_mapping
from maelab.data import require_labels
from maelab.data.datasets import find_files
from maelab.data.folder import relative_to_cwd
from maelab.engine.kept import kept_at_end
from maelab.errors import ConfigError, DataError

EVALUATIONS = ("probe", "knn", "recon", "finetune", "scratch")
FLOOR_EVALUATIONS = ("probe", "knn", "recon")  # evaluated at random init on the baseline's architecture
LABELLED_EVALUATIONS = ("probe", "knn", "finetune", "scratch")  # refused on an unlabeled image folder
CLAIM_KINDS = ("better", "same")


@dataclass
class VariantSpec:
    """One arm of the ablation: a config file (default: the suite's base) and overrides on top."""

    config: Optional[str] = None  # relative to the suite file
    overrides: list[str] = field(default_factory=list)
    description: str = ""


@dataclass
class ClaimSpec:
    """A claim (the report's in the repo's suites, else the suite's own), judged by the 95% interval of
    (variant - reference) on ``metric``.

    ``better``: the variant beats the reference (held if the interval is above 0; not held if it lies below the
    claimed gain, or below 0 when no gain is given). ``same``: no change (held if the interval lies within
    ±``margin``; not held if it excludes 0 and leaves the margin).
    """

    text: str = ""
    variant: str = ""
    metric: str = "probe_top1"
    kind: str = "better"
    reference: Optional[str] = None  # default: the suite's baseline; "scratch" when the suite evaluates scratch
    reference_metric: Optional[str] = None  # the reference's metric, default ``metric`` (scratch: scratch_top1)
    claimed: Optional[float] = None  # the figure claimed for the variant (the report's, in the repo's suites)
    claimed_reference: Optional[float] = None  # the figure claimed for the reference
    margin: float = 1.0


@dataclass
class SuiteSpec:
    """What a suite file holds."""

    name: str = "suite"
    description: str = ""
    base: str = ""  # the config file every variant starts from, relative to the suite file
    overrides: list[str] = field(default_factory=list)  # applied to every variant (subset, epochs, ...)
    eval_overrides: list[str] = field(default_factory=list)  # applied to the evaluations only
    seeds: int = 3  # seeds 0 .. seeds-1
    baseline: str = "baseline"
    evals: list[str] = field(default_factory=lambda: ["probe", "knn", "recon"])
    floor: bool = True  # also evaluate the baseline's architecture at random init, per seed
    # also evaluate every run at these epochs, from its kept checkpoints (eval/<name>@epoch_0010.json; results.csv
    # metrics <metric>@epoch_0010; the report's accuracy-versus-epoch curves): the runs must keep them
    # (train.keep_checkpoints and train.save_every in the overrides); list the last epoch to end the curves there
    eval_epochs: list[int] = field(default_factory=list)
    figure_variants: list[str] = field(default_factory=list)  # rows of the reconstruction figure (default: all)
    variants: dict[str, VariantSpec] = field(default_factory=dict)
    claims: list[ClaimSpec] = field(default_factory=list)
    # the claims are the report's ("Improving Masked Autoencoders ..."; the repo's suites in configs/suites/): the
    # report on the suite speaks of "the report's claims" and its figures; false (a suite of your own): "the
    # suite's claims". Wording only: a folder run before this key existed takes it as false
    report_claims: bool = False


@dataclass
class Suite:
    """A loaded suite: its spec, the file it came from, and the seeds to run."""

    spec: SuiteSpec
    path: Path
    seeds: list[int]

    @property
    def name(self) -> str:
        return self.spec.name

    def variant_names(self) -> list[str]:
        return list(self.spec.variants)

    def run_config(self, variant: str, seed: int, out_dir: Path, extra: Sequence[str] = ()) -> Config:
        """The pretraining config of one variant × seed, written into ``out_dir`` (``extra`` overrides last)."""
        v = self.spec.variants[variant]
        path = self.path.parent / (v.config or self.spec.base)
        overrides = ["train.progress=false", *self.spec.overrides, *v.overrides, *extra, f"train.seed={seed}",
                     f"name={self.name}-{variant}", f"out_dir={out_dir}"]
        try:
            return load_config(path, overrides, overrides_from="the suite's overrides and the run's settings")
        except ConfigError as err:
            raise ConfigError(f"suite {self.path}, variant '{variant}': {err}") from None


def load_suite(path: str | Path, seeds: Optional[int] = None) -> Suite:
    """Read and check a suite file; ``seeds`` (the CLI's --seeds N) replaces the suite's number of seeds."""
    path = Path(path)
    spec = _read_spec(path)
    n = spec.seeds if seeds is None else seeds
    if n < 1:
        raise ConfigError(f"--seeds {n} is not valid: run at least one seed")
    suite = Suite(spec=spec, path=path, seeds=list(range(n)))
    _check(suite)
    return suite


def suite_from_dict(data: dict, path: Path) -> SuiteSpec:
    """A SuiteSpec from a mapping (a suite file's or the copy saved in an ablation folder)."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SuiteSpec), OmegaConf.create(data)))
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"suite file {path}: bad or unknown key '{key}' ({str(err).splitlines()[0]}): "
                          f"see configs/suites/ for the format") from None


def _read_spec(path: Path) -> SuiteSpec:
    return suite_from_dict(_extended(path, ()), path)


def _extended(path: Path, seen: tuple[Path, ...]) -> dict:
    """A suite file's mapping over that of the suite its ``extends:`` names (a file in the same folder, so that
    the relative ``base`` and variant configs mean the same in both): each key the file gives replaces the
    other's whole (a list of overrides is not appended to). ConfigError: the other file missing, outside the
    folder or not a suite (its keys checked as its own), a loop of extends, or an extending suite without a name
    of its own."""
    data = read_yaml_mapping(path, "suite file", "configs/suites/seed_cifar10_cpu.yaml")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    where = f"suite file {path}: extends: {parent!r}"
    if not isinstance(parent, str) or parent.strip() in ("", ".", ".."):
        raise ConfigError(f"{where} is not a file name: give the name of one suite file beside it")
    target = path.parent / parent
    if target.resolve().parent != path.resolve().parent:
        raise ConfigError(f"{where} is not a suite file of the same folder: give the name of one beside it (its "
                          "relative paths are read from that folder)")
    if target.resolve() in seen or target.resolve() == path.resolve():
        raise ConfigError(f"{where} leads back to itself: break the loop")
    if not target.is_file():
        raise ConfigError(f"{where}: there is no such file beside it: give the name of a suite file in {path.parent}")
    if "name" not in data:
        raise ConfigError(f"suite file {path} extends {parent} without a name of its own: add 'name:' (its "
                          "results folder and its section of a page are named after it)")
    inherited = _extended(target, (*seen, path.resolve()))
    suite_from_dict(inherited, target)  # a bad key there is named there, not in the file that extends it
    return {**inherited, **data}


def _check(suite: Suite) -> None:
    """Every name the suite uses exists, and every run's config is valid (before anything runs)."""
    spec, where = suite.spec, f"suite {suite.path}"
    if not spec.variants:
        raise ConfigError(f"{where} has no variants: add at least one under 'variants:'")
    if not spec.base and any(v.config is None for v in spec.variants.values()):
        raise ConfigError(f"{where}: set 'base:' (a config file) or give every variant a 'config:'")
    reserved = [name for name in spec.variants if name in (SCRATCH, FLOOR, ZERO_PRED)]
    if reserved:  # the rows of the from-scratch runs and the floors carry these names
        raise ConfigError(f"{where}: variant name '{reserved[0]}' is reserved for the suite's own runs "
                          f"({SCRATCH}, {FLOOR}, {ZERO_PRED}): rename the variant")
    if spec.baseline not in spec.variants:
        raise ConfigError(f"{where}: baseline '{spec.baseline}' is not a variant: use one of "
                          f"{', '.join(spec.variants)}")
    for name in spec.evals:
        if name not in EVALUATIONS:
            raise ConfigError(f"{where}: evaluation '{name}' is not known: use {', '.join(EVALUATIONS)}")
    for name in spec.figure_variants:
        if name not in spec.variants:
            raise ConfigError(f"{where}: figure variant '{name}' is not a variant")
    for claim in spec.claims:
        _check_claim(claim, spec, where)
    if any(e < 1 for e in spec.eval_epochs):
        raise ConfigError(f"{where}: eval_epochs {spec.eval_epochs} must be numbers of epochs >= 1")
    for variant in spec.variants:
        cfg = suite.run_config(variant, suite.seeds[0], Path("unused"))
        if cfg.train.stop_after_epochs is not None:  # the run would stop early and be taken as finished
            raise ConfigError(f"{where}, variant '{variant}': train.stop_after_epochs stops a run before optim.epochs "
                              "and the suite would take it as finished: set optim.epochs instead")
        _check_kept(cfg, spec.eval_epochs, f"{where}, variant '{variant}'")
        _check_labels(suite, variant, cfg)


def check_data_found(suite: Suite) -> None:
    """Refuse to start a suite whose runs or evaluations read data that is not there (``DataError``, one line
    naming the variant and the path or the dataset, ending "nothing was run"): an image folder that does not exist
    (and where a relative one is read from), or CIFAR-10 / PROPS found nowhere and not downloadable. A dataset to
    download is downloaded here, once, before any worker starts. Checked when the suite starts running, not when
    it is only loaded (a merge or a report reads it on a machine without the data)."""
    seen: set[tuple] = set()
    for variant in suite.variant_names():
        for extra, what in (((), "pretrains on"), (suite.spec.eval_overrides, "evaluates on")):
            data = suite.run_config(variant, suite.seeds[0], Path("unused"), extra).data
            key = (data.name, data.root, data.cache_dir, data.download, data.url, data.md5)
            if key not in seen:
                seen.add(key)
                _check_found(data, f"suite {suite.path}, variant '{variant}' {what}")


def _check_found(data: DataConfig, where: str) -> None:
    root = Path(data.root).expanduser() if data.name == "folder" and data.root else None
    if root is not None and not root.is_dir():
        raise DataError(f"{where} data.root={data.root}, which does not exist{relative_to_cwd(root)}; nothing was run")
    if data.name in ("cifar10", "props"):
        try:
            find_files(data)  # found on disk, or downloaded into the cache now (once, not by every run)
        except DataError as err:
            raise DataError(f"{err}; {where} it: nothing was run") from None


def _check_kept(cfg: Config, epochs: list[int], where: str) -> None:
    """Each of the suite's eval_epochs is a checkpoint the run keeps to its end."""
    t = cfg.train
    kept = kept_at_end(cfg.optim.epochs, t.save_every, t.keep_checkpoints)
    missing = [e for e in epochs if e not in kept]
    if missing:
        raise ConfigError(
            f"{where}: eval_epochs {missing} would not be kept (optim.epochs={cfg.optim.epochs}, train.save_every="
            f"{t.save_every}, train.keep_checkpoints={t.keep_checkpoints} keep {kept or 'none'}): add "
            "train.keep_checkpoints=-1 to the suite's overrides, with a train.save_every that divides each epoch")


def _check_labels(suite: Suite, variant: str, cfg: Config) -> None:
    """A run of ``variant`` on an unlabeled image folder is refused before anything runs when its k-NN monitor or
    an evaluation of the suite needs labels (the evaluations with the suite's eval_overrides, which may name a
    labelled data.root)."""
    where = f"suite {suite.path}, variant '{variant}'"
    if cfg.eval.knn_every:
        require_labels(cfg.data, f"{where}: the k-NN monitor (eval.knn_every={cfg.eval.knn_every})",
                       "set eval.knn_every=0")
    fix = "keep only recon in the suite's evals, or give a labelled data.root in its eval_overrides"
    if "scratch" in suite.spec.evals:  # trains on the run's own data, without the eval_overrides
        require_labels(cfg.data, f"{where}: the evaluation scratch", "keep only recon in the suite's evals")
    needs = [e for e in suite.spec.evals if e in LABELLED_EVALUATIONS and e != "scratch"]
    if needs:
        eval_cfg = suite.run_config(variant, suite.seeds[0], Path("unused"), suite.spec.eval_overrides)
        require_labels(eval_cfg.data, f"{where}: each of the evaluations {', '.join(needs)}", fix)


def _check_claim(claim: ClaimSpec, spec: SuiteSpec, where: str) -> None:
    for name in (claim.variant, claim.reference or spec.baseline):
        if name == "scratch" and "scratch" in spec.evals and name != claim.variant:
            continue  # the baseline's model trained from scratch with the fine-tuning budget
        if name not in spec.variants:
            raise ConfigError(f"{where}: claim '{claim.text}' names variant '{name}', which the suite does not run")
    if claim.kind not in CLAIM_KINDS:
        raise ConfigError(f"{where}: claim kind '{claim.kind}' is not known: use {' or '.join(CLAIM_KINDS)}")
    if claim.margin <= 0:
        raise ConfigError(f"{where}: claim '{claim.text}' has margin {claim.margin}: it must be > 0")
