"""The config sections of a run's data: which dataset and how much of it (``data``), and the augmentation of
pretraining batches (``aug``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from maelab.config.checks import _choice, _positive
from maelab.errors import ConfigError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


@dataclass
class DataConfig:
    """Which images to train on and where they are."""

    # folder: data.root holding train/<class>/* and test/<class>/* (labelled), or any tree of images without train/
    # and test/ (unlabeled: pretraining, recon and figures only; see maelab.data.folder)
    name: str = "cifar10"  # cifar10 | synthetic | props | folder
    # cifar10, props: a folder holding cifar-10-batches-py/ (props: Progress-Objects-Sample/ or its .tar.gz),
    # else $MAELAB_DATA_DIR, else the cache. folder: the image folder itself (required). A data.root holding another
    # source's files (images with cifar10, CIFAR-10 with folder, any with synthetic) is refused (maelab.data.roots).
    root: Optional[str] = None
    download: bool = True  # download into the cache when the data is found nowhere
    url: Optional[str] = None  # cifar10, props: where the archive is fetched from; None = the official source
    md5: Optional[str] = None  # cifar10, props: md5 of the downloaded archive; None = the official archive's
    cache_dir: Optional[str] = None  # default ~/.cache/maelab
    limit_train: Optional[int] = None  # seeded, class-balanced subset of the training set
    limit_test: Optional[int] = None  # seeded, class-balanced subset of the test set
    synthetic_train: int = 10000  # size of the synthetic training set
    synthetic_test: int = 2000  # size of the synthetic test set
    # folder: every image is resized (stretched) to image_size x image_size once, when loaded; augmentation
    # later resizes to the model's img_size (model.img_size / the preset's), so keep the two equal or close.
    image_size: int = 32
    # folder: decoded images (N x image_size^2 x 3 bytes) larger than this many GiB are decoded once into a .npy
    # file under data.cache_dir/folders/ and memory-mapped instead of held in memory (0: always)
    max_memory_gib: float = 4.0

    def __post_init__(self) -> None:
        _choice("data.name", self.name, ("cifar10", "synthetic", "props", "folder"))
        _positive("data.limit_train", self.limit_train)
        _positive("data.limit_test", self.limit_test)
        _positive("data.synthetic_train", self.synthetic_train)
        _positive("data.synthetic_test", self.synthetic_test)
        _positive("data.image_size", self.image_size)
        _positive("data.max_memory_gib", self.max_memory_gib, allow_zero=True)
        if self.md5 is not None and re.fullmatch(r"[0-9a-fA-F]{32}", self.md5) is None:
            raise ConfigError(f"data.md5={self.md5!r} is not an md5 (32 hex digits): fix it or leave it unset")
        for key in ("url", "md5"):
            if self.name not in ("cifar10", "props") and getattr(self, key) is not None:
                raise ConfigError(f"data.{key} names the archive that data.name=cifar10 or props downloads, and "
                                  f"data.name={self.name} downloads nothing: drop data.{key}")
        if self.name == "folder" and not self.root:
            raise MissingDataRoot("data.name=folder needs data.root: a folder of images (any tree for pretraining, or "
                              "train/<class>/ and test/<class>/ for labels)")


class MissingDataRoot(ConfigError):
    """data.name=folder without data.root (``maelab config show`` still shows such a recipe)."""


@dataclass
class AugConfig:
    """Augmentation, applied on the device with per-sample parameters.

    ``seed3``/``seed5`` are the report's settings: the ``base`` crop + flip, then random rotation, zoom
    and contrast (seed3), plus brightness and translation (seed5); the preset says which ops are on,
    the factors below say how strong they are (Keras layer semantics) and ``p_*`` how often each applies.
    """

    preset: str = "mae"  # none | mae (random resized crop + flip) | keras (resize 52, crop 48, flip) | seed3 | seed5
    base: str = "keras"  # seed3/seed5: the crop + flip they build on, keras | mae
    crop_scale_min: float = 0.2  # mae: smallest crop area as a fraction of the image
    crop_scale_max: float = 1.0
    flip: float = 0.5  # probability of a horizontal flip
    rotation: float = 0.15  # angle uniform in +-rotation full turns (Keras RandomRotation; 0.15 = +-54 deg)
    zoom: float = 0.2  # sampled-region scale uniform in [1 - zoom, 1 + zoom], > 1 zooms out (Keras RandomZoom)
    contrast: float = 0.2  # (x - channel mean) * f + mean, f uniform in [1 - c, 1 + c] (Keras RandomContrast)
    brightness: float = 0.2  # x + delta, delta uniform in +-brightness, [0, 1] units (Keras RandomBrightness)
    translation: float = 0.1  # shift uniform in +-translation of height and of width (Keras RandomTranslation)
    p_rotation: float = 1.0  # probability that each op is applied to a sample (Keras: always)
    p_zoom: float = 1.0
    p_contrast: float = 1.0
    p_brightness: float = 1.0
    p_translation: float = 1.0
    fill: str = "reflect"  # seed3/seed5: what the warp shows outside the image, reflect | zeros | border

    def __post_init__(self) -> None:
        _choice("aug.preset", self.preset, ("none", "mae", "keras", "seed3", "seed5"))
        _choice("aug.base", self.base, ("keras", "mae"))
        _choice("aug.fill", self.fill, ("reflect", "zeros", "border"))
        if not 0 < self.crop_scale_min <= self.crop_scale_max <= 1:
            raise ConfigError(
                "aug.crop_scale_min/max must satisfy 0 < min <= max <= 1, "
                f"got {self.crop_scale_min}/{self.crop_scale_max}"
            )
        for name in ("flip", "p_rotation", "p_zoom", "p_contrast", "p_brightness", "p_translation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"aug.{name}={getattr(self, name)} is a probability: use a value in [0, 1]")
        for name, top, closed in (("rotation", 0.5, True), ("zoom", 1.0, False), ("contrast", 1.0, True),
                                  ("brightness", 1.0, True), ("translation", 1.0, True)):
            value = getattr(self, name)
            if not (0 <= value <= top if closed else 0 <= value < top):
                bound = "<=" if closed else "<"
                raise ConfigError(f"aug.{name}={value} is out of range: use 0 <= {name} {bound} {top}")
