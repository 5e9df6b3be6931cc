"""The dataset every command uses, built from a ``DataConfig``: whole splits as uint8 tensors."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from maelab.config import DataConfig
from maelab.data.cifar10 import CLASSES as CIFAR10_CLASSES
from maelab.data.cifar10 import TRAIN_MEAN, TRAIN_STD, find_cifar10, load_cifar10
from maelab.data.folder import is_labelled, load_folder
from maelab.data.folder_cache import GIB, FolderStore
from maelab.data.folder_files import is_image_name, sub_dirs
from maelab.data.locate import cache_dir
from maelab.data.props import CLASSES as PROPS_CLASSES
from maelab.data.props import find_props, load_props
from maelab.data.roots import DataRootError, check_root
from maelab.data.subsets import subset_index
from maelab.data.synthetic import CLASSES as SYNTHETIC_CLASSES
from maelab.data.synthetic import make_synthetic
from maelab.errors import DataError
from maelab.seeds import derive_seed

TEST_SUBSET_SEED = 0  # data.limit_test draws the same test images for every run seed (comparable evaluations)
STATS_CHUNK = 4096  # images per chunk of channel_stats (a memory-mapped set is read a chunk at a time)


@dataclass
class Dataset:
    """Both splits of one dataset, held as tensors (on the CPU or on the training device).

    ``x_train: [N, H, W, 3] uint8``, ``y_train: [N] int64``, ``x_test: [M, H, W, 3] uint8``,
    ``y_test: [M] int64``; ``mean``/``std``: per-channel pixel statistics of the training images in
    [0, 1] units, for normalization. An unlabeled image folder has ``y_train``, ``x_test`` and ``y_test`` None
    (no labels, no test split) and no classes: code that needs them checks :attr:`labelled` (or calls
    :func:`require_labels` on the config first). ``mapped``: the images are memory-mapped from a cache file
    (:mod:`maelab.data.folder_cache`) and stay on the CPU in :meth:`to`. ``train_files`` / ``test_files``: the
    file each image was decoded from, relative to ``source`` (``"test/cat/IMG_0412.jpg"``), one per image in the
    order of ``x_train`` / ``x_test``; None for generated or archived images (synthetic, CIFAR-10, PROPS) and for
    a missing split. They follow the images wherever a copy or a subset takes them (:meth:`to`, :meth:`subset`).
    """

    x_train: Tensor
    y_train: Optional[Tensor]
    x_test: Optional[Tensor]
    y_test: Optional[Tensor]
    classes: list[str]
    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: Optional[str] = None  # the folder the files were read from (None when generated)
    mapped: bool = False
    train_files: Optional[tuple[str, ...]] = None
    test_files: Optional[tuple[str, ...]] = None

    def __post_init__(self) -> None:
        for files, x, split in ((self.train_files, self.x_train, "train"), (self.test_files, self.x_test, "test")):
            if files is not None and (x is None or len(files) != len(x)):
                raise ValueError(f"{split}_files names {len(files)} files for "
                                 f"{'no' if x is None else len(x)} {split} images: one per image, in their order")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labelled(self) -> bool:
        """True when the set has labels and a test split (every dataset but an unlabeled image folder)."""
        return self.y_train is not None

    @property
    def image_size(self) -> int:
        """Height (= width) of the stored images in pixels."""
        return int(self.x_train.shape[1])

    def eval_images(self) -> tuple[Tensor, Optional[Tensor], str]:
        """The images that reconstruction metrics and figures show: ``(x, y, split)``, the test split, or the
        training images (``y`` None, ``split`` "train") of a set without one."""
        if self.x_test is None:
            return self.x_train, None, "train"
        return self.x_test, self.y_test, "test"

    def eval_files(self) -> Optional[tuple[str, ...]]:
        """The file of each image :meth:`eval_images` gives, in its order (None where the images come from no
        files)."""
        return self.train_files if self.x_test is None else self.test_files

    def subset(self, split: str, index: Tensor) -> Dataset:
        """A copy whose ``split`` ("train" or "test") keeps the images at ``index: [n] int64`` (CPU), in that
        order, with their labels and files; the subset is held in memory."""
        x, y, files = (self.x_train, self.y_train, self.train_files) if split == "train" else \
            (self.x_test, self.y_test, self.test_files)
        if x is None:
            raise ValueError(f"the {self.name} set has no {split} split to take a subset of")
        taken = (x[index.to(x.device)], None if y is None else y[index.to(y.device)],
                 None if files is None else tuple(files[i] for i in index.tolist()))
        return replace(self, **dict(zip((f"x_{split}", f"y_{split}", f"{split}_files"), taken, strict=True)))

    def to(self, device: str | torch.device) -> Dataset:
        """A copy with the tensors on ``device``; memory-mapped images stay on the CPU (a set too large for memory
        would not fit on the device either: each batch is moved when it is used), their labels move."""
        def move(t: Optional[Tensor], keep: bool = False) -> Optional[Tensor]:
            return t if t is None or keep else t.to(device)

        return replace(self, x_train=move(self.x_train, self.mapped), y_train=move(self.y_train),
                       x_test=move(self.x_test, self.mapped), y_test=move(self.y_test))


def load_dataset(cfg: DataConfig, seed: int, progress: bool = True) -> Dataset:
    """Load the dataset ``cfg`` names, then apply ``data.limit_train`` / ``data.limit_test``.

    synthetic: the training set is drawn from ``seed``, the test set from a derived seed.
    cifar10 / props: found (or downloaded) by ``find_cifar10`` / ``find_props``. folder: the images under
    ``data.root``, resized to ``data.image_size`` (labelled or unlabeled, :mod:`maelab.data.folder`). Limits take
    seeded class-balanced subsets (an unlabeled set: a seeded random subset): the training subset depends on
    ``seed``, the test subset does not (seed ``TEST_SUBSET_SEED``); images, labels and files are taken by one
    index (:meth:`Dataset.subset`). A subset is held in memory. ``progress``: show
    the decoding of a folder that takes a while (``train.progress``; :mod:`maelab.progress`). A data.root holding
    another dataset's files than data.name's is refused first (``DataRootError``, :mod:`maelab.data.roots`).
    """
    check_root(cfg)
    if cfg.name == "synthetic":
        ds = _load_synthetic(cfg, seed)
    else:
        ds = _load_folder(cfg, progress) if cfg.name == "folder" else \
            {"cifar10": _load_cifar10, "props": _load_props}[cfg.name](cfg)
    if cfg.limit_train is not None:
        ds = ds.subset("train", subset_index(len(ds.x_train), ds.y_train, cfg.limit_train, seed,
                                             key="data.limit_train", split="training set"))
    if cfg.limit_test is not None:
        if ds.x_test is None:
            raise DataError(f"data.limit_test={cfg.limit_test} limits a test split, and data.root={ds.source} is an "
                            "unlabeled folder without one: set data.limit_test=null")
        ds = ds.subset("test", subset_index(len(ds.x_test), ds.y_test, cfg.limit_test, TEST_SUBSET_SEED,
                                            key="data.limit_test", split="test set"))
    for split, x in (("training", ds.x_train), ("test", ds.x_test)):
        if x is not None and len(x) == 0:
            raise DataError(f"the {ds.name} {split} set is empty: check data.name and the dataset files")
    return ds


def require_labels(cfg: DataConfig, what: str, other_fix: str = "") -> None:
    """Refuse, before any image is decoded, to run ``what`` (e.g. "probe") on an unlabeled image folder, or on a
    labelled one whose ``train/`` holds a single class (every prediction is that class: a top-1 of 100% by
    construction): a ``DataError`` naming the folder and the fixes (``other_fix``, e.g. "set eval.knn_every=0",
    comes last). Other datasets, and a data.root that does not exist (loading reports it), pass."""
    if cfg.name != "folder" or not cfg.root:
        return
    root = Path(cfg.root).expanduser()
    fixes = ("give a labelled folder with data.root=DIR holding train/<class>/ and test/<class>/, or evaluate on "
             "CIFAR-10 with data.name=cifar10" + (f", or {other_fix}" if other_fix else ""))
    if root.is_dir() and not is_labelled(root):
        raise DataError(f"data.root={root} has no train/<class>/ and test/<class>/ folders (an unlabeled image "
                        f"folder){classes_at_top(root)}: {what} needs labels; {fixes}")
    classes = sub_dirs(root / "train") if (root / "train").is_dir() else []
    if len(classes) == 1:
        raise DataError(f"data.root={root} has one class ({root / 'train' / classes[0]}): {what} would score 100% "
                        f"by construction (every image is of the only class there is); add a second class folder "
                        f"to train/ and test/, or {fixes}")


def classes_at_top(root: Path) -> str:
    """A hint for a folder in torchvision's ImageFolder layout (class folders at its top, no train/ or test/):
    ", and its folders airplane/, cat/, ... look like classes: move them into train/<class>/ and test/<class>/";
    "" when it has fewer than two folders or loose images at its top."""
    folders = sub_dirs(root)
    if len(folders) < 2 or any(p.is_file() and is_image_name(p.name) for p in root.iterdir()):
        return ""
    shown = ", ".join(f"{name}/" for name in folders[:3]) + (", ..." if len(folders) > 3 else "")
    return (f", and its {len(folders)} folders {shown} look like classes (torchvision's ImageFolder layout): move "
            "them into train/<class>/ and test/<class>/ (a split of each class's images into both)")


def _load_synthetic(cfg: DataConfig, seed: int) -> Dataset:
    x_train, y_train = make_synthetic(cfg.synthetic_train, seed)
    x_test, y_test = make_synthetic(cfg.synthetic_test, derive_seed(seed, "synthetic-test"))
    mean, std = channel_stats(x_train)
    return Dataset(x_train, y_train, x_test, y_test, list(SYNTHETIC_CLASSES), "synthetic", mean, std)


def _load_cifar10(cfg: DataConfig) -> Dataset:
    folder = find_cifar10(cfg)
    x_train, y_train, x_test, y_test = load_cifar10(folder)
    return Dataset(x_train, y_train, x_test, y_test, list(CIFAR10_CLASSES), "cifar10", TRAIN_MEAN, TRAIN_STD,
                   source=str(folder.resolve().parent))


def _load_props(cfg: DataConfig) -> Dataset:
    path = find_props(cfg)
    x_train, y_train, x_test, y_test = load_props(path)
    mean, std = channel_stats(x_train)
    return Dataset(x_train, y_train, x_test, y_test, list(PROPS_CLASSES), "props", mean, std,
                   source=str(path.resolve().parent))


def _load_folder(cfg: DataConfig, progress: bool = True) -> Dataset:
    root = Path(cfg.root).expanduser()
    store = FolderStore(root, cache_dir(cfg), int(cfg.max_memory_gib * GIB))
    f = load_folder(root, cfg.image_size, store, progress)
    mean, std = channel_stats(f.x_train)
    return Dataset(f.x_train, f.y_train, f.x_test, f.y_test, f.classes, "folder", mean, std,
                   source=str(root.resolve()), train_files=f.train_files, test_files=f.test_files,
                   mapped=store.mapped(len(f.x_train) + (0 if f.x_test is None else len(f.x_test)), cfg.image_size))


def find_files(cfg: DataConfig) -> Optional[Path]:
    """Where ``load_dataset(cfg)`` reads its files (finding or downloading them as it would): the dataset's
    folder or archive for cifar10 / props, data.root for folder, None for the generated synthetic set.
    Raises ``DataError`` when they are not found, ``DataRootError`` when data.root holds another dataset's files."""
    check_root(cfg)
    if cfg.name == "cifar10":
        return find_cifar10(cfg)
    if cfg.name == "props":
        return find_props(cfg)
    return Path(cfg.root).expanduser() if cfg.name == "folder" else None


def on_disk(cfg: DataConfig) -> bool:
    """True when ``find_files`` finds the dataset without downloading anything. ``DataRootError`` (not False) when
    data.root holds another dataset's files: a caller must not fall back to other data then."""
    try:
        find_files(replace(cfg, download=False))
    except DataRootError:
        raise
    except DataError:
        return False
    return True


def channel_stats(x: Tensor) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Exact per-channel mean and (population) std of ``x: [N, H, W, 3] uint8`` in [0, 1] units.

    A channel with no spread (every pixel the same value: black images, a missing colour) gets std 1, not 0:
    standardising it by 0 would give NaN / inf inputs; 1 leaves it centred (scikit-learn's ``StandardScaler``
    does the same for zero-variance features).
    """
    values = torch.arange(256, dtype=torch.float64) / 255
    counts = torch.zeros(3, 256, dtype=torch.float64)
    for start in range(0, len(x), STATS_CHUNK):  # a chunk at a time: a memory-mapped set is never copied whole
        chunk = x[start:start + STATS_CHUNK].cpu()
        for c in range(3):
            counts[c] += torch.bincount(chunk[..., c].reshape(-1), minlength=256).double()
    means, stds = [], []
    for c in range(3):
        total = counts[c].sum().clamp(min=1)
        mean = (counts[c] * values).sum() / total
        var = (counts[c] * (values - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(float(var.sqrt()) if var > 0 else 1.0)
    return tuple(means), tuple(stds)  # type: ignore[return-value]
