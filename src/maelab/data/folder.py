"""An image folder: torchvision's ImageFolder layout (labelled), or any tree of images (unlabeled).

Two layouts, told apart by the top of ``data.root`` (:func:`is_labelled`):

- **labelled**: ``root/train/<class>/*`` and ``root/test/<class>/*``. Class names (the sub-folders of
  ``train/``, sorted) give the labels 0, 1, ...; ``test/`` may lack a class but not add one. A root with
  ``train/`` or ``test/`` is read this way, and then needs both, with class folders (a ``train/`` of loose images
  is refused, naming ``data.root=ROOT/train`` as the way to pretrain on them without labels).
- **unlabeled**: any other folder: every image file under it, at any depth (class-like sub-folders are just
  folders), is a training image; there are no labels and no test split. Enough for pretraining, reconstruction
  metrics and figures (on training images); evaluations that need labels refuse it.

Image files (PNG, JPEG, BMP, WebP, TIFF, any case; other files and hidden paths such as ``.ipynb_checkpoints/``
skipped, links to folders followed: :mod:`maelab.data.folder_files`) are found recursively and taken in sorted
path order (labelled: per class, so each split is grouped by class). Every image is decoded once, with Pillow (a
TIFF's first page only), turned upright by its EXIF Orientation tag (camera and phone photos are often stored
sideways with a tag saying so), made 8-bit RGB and resized (stretched, bilinear) to ``size x size``; the result is
held as uint8 like the other datasets, in memory or, for a large folder, memory-mapped from a cache file
(:mod:`maelab.data.folder_cache`). Augmentation later resizes to the model's img_size.

A labelled folder's ``test/`` given alone as data.root (``train/`` beside it) is refused: pretraining on it would
train on the images that evaluations on the labelled folder test on.

Making 8-bit RGB, by Pillow mode (what ``Image.open`` reports, whatever the file's name):

- 8-bit modes (``1``, ``L``, ``LA``, ``La``, ``P``, ``PA``, ``RGB``, ``RGBA``, ``RGBa``, ``RGBX``, ``CMYK``,
  ``YCbCr``, ``LAB``, ``HSV``): Pillow's ``convert("RGB")``; alpha is dropped (premultiplied alpha undone first).
  Pillow opens 16-bit-per-channel colour PNGs as ``RGB``/``RGBA``, keeping each sample's high byte.
- 16-bit grey (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``; Pillow's mode for 16-bit grey PNG and TIFF): scaled
  linearly by the bit depth, ``0..65535 -> 0..255`` (rounded); a TIFF that declares fewer bits per sample (12-bit
  cameras) by its own depth, ``0..2**bits - 1``.
- 32-bit integer ``I`` (16-bit data held in 32 bits: older Pillows' 16-bit grey PNG; signed 16-bit or 32-bit
  TIFF): scaled as 16-bit, ``0..65535 -> 0..255``; an image with a value outside 0..65535 is refused.
- 32-bit float ``F`` (float TIFF): ``0..1 -> 0..255``; an image with a value outside [0, 1] (or NaN) is refused.

Scaling is by the nominal range, never stretched per image, so intensities stay comparable between images; an
image with values outside it is refused with a ``DataError`` naming the file, its mode and the fix.
Pillow's own ``convert`` clips such modes at 255 instead of scaling them (a 16-bit image comes out white), hence
the hand-written scaling here.
"""

from __future__ import annotations

import functools
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from maelab.data.folder_cache import FolderStore
from maelab.data.folder_files import EXTENSIONS, image_files, sub_dirs
from maelab.errors import DataError
from maelab.progress import phase

SPLITS = ("train", "test")
MAX_WORKERS = 8  # decoding threads (Pillow releases the GIL while decoding and resizing)
# Pillow modes whose convert("RGB") is right (La through LA: Pillow has no La -> RGB conversion)
RGB_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # more than 8 bits a sample: scaled by _full_scale
FIX = "convert it to an 8-bit RGB PNG"


def relative_to_cwd(root: Path) -> str:
    """" (read from FOLDER, where maelab runs: ...)" for a relative ``root``, "" for an absolute one: a relative
    data.root saved in a run's config is read from the folder each command runs in."""
    if root.expanduser().is_absolute():
        return ""
    return (f" (a relative data.root is read from the folder maelab runs in, {Path.cwd()}: run from the folder the "
            "path was written for, or give it as an absolute path)")


def is_labelled(root: Path) -> bool:
    """True when ``root`` has the labelled layout (a ``train/`` or ``test/`` folder at its top), False for an
    unlabeled tree. ``DataError`` when ``root`` is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"the image folder {root} does not exist{relative_to_cwd(root)}: set data.root to a folder "
                        "of images (any tree to pretrain, or train/<class>/ and test/<class>/ folders for labels)")
    return any((root / split).is_dir() for split in SPLITS)


@dataclass(frozen=True)
class FolderImages:
    """An image folder as decoded: the splits as :func:`load_image_folder` gives them (unlabeled: ``y_train``,
    ``x_test``, ``y_test``, ``test_files`` None, ``classes`` empty) and the file each image was decoded from,
    relative to the root with ``/`` separators (``"train/cat/IMG_0412.jpg"``), one per image in their order: the
    list that was decoded, never listed again."""

    x_train: Tensor  # [N, size, size, 3] uint8
    y_train: Optional[Tensor]  # [N] int64
    x_test: Optional[Tensor]  # [M, size, size, 3] uint8
    y_test: Optional[Tensor]  # [M] int64
    classes: list[str]
    train_files: tuple[str, ...]
    test_files: Optional[tuple[str, ...]]


def load_folder(root: Path, size: int, store: Optional[FolderStore] = None, progress: bool = True) -> FolderImages:
    """Decode the image folder ``root`` in its layout (:func:`is_labelled`), as :func:`load_image_folder` or
    :func:`load_unlabeled_folder` do, keeping the file of each image."""
    root = Path(root)
    return _labelled(root, size, store, progress) if is_labelled(root) else _unlabeled(root, size, store, progress)


def load_image_folder(root: Path, size: int, store: Optional[FolderStore] = None, progress: bool = True
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str]]:
    """Decode ``root/train`` and ``root/test`` (the labelled layout).

    Returns ``x_train: [N, size, size, 3] uint8``, ``y_train: [N] int64``, ``x_test: [M, size, size, 3] uint8``,
    ``y_test: [M] int64`` and the class names (sorted; label ``i`` is ``classes[i]``). The pixels are held in
    memory, or memory-mapped when ``store`` says the two splits together are too large; ``progress`` shows the
    decoding once it takes a while (:func:`_decode_into`). Raises ``DataError`` for a missing split, no classes, an
    empty class folder or a file that cannot be decoded. :func:`load_folder` gives the files too.
    """
    f = _labelled(Path(root), size, store, progress)
    return f.x_train, f.y_train, f.x_test, f.y_test, f.classes  # type: ignore[return-value]


def load_unlabeled_folder(root: Path, size: int, store: Optional[FolderStore] = None, progress: bool = True
                          ) -> Tensor:
    """Every image under ``root`` (any depth, sorted path order) -> ``x: [N, size, size, 3] uint8``, in memory or
    memory-mapped as ``store`` says, with ``progress`` as :func:`load_image_folder`'s. ``DataError`` when it holds
    no image or a file cannot be decoded. :func:`load_folder` gives the files too."""
    return _unlabeled(Path(root), size, store, progress).x_train


def _labelled(root: Path, size: int, store: Optional[FolderStore], progress: bool) -> FolderImages:
    train_dir, test_dir = (_split_dir(root, split) for split in SPLITS)
    classes = _class_names(train_dir)
    (train_files, y_train), (test_files, y_test) = (_list_files(d, classes) for d in (train_dir, test_dir))
    mapped = store is not None and store.mapped(len(train_files) + len(test_files), size)
    x_train, x_test = (_decode(files, size, f"decoding {split}/", store if mapped else None, split, progress)
                       for files, split in ((train_files, "train"), (test_files, "test")))
    return FolderImages(x_train, torch.tensor(y_train, dtype=torch.int64), x_test,
                        torch.tensor(y_test, dtype=torch.int64), classes, _relative(root, train_files),
                        _relative(root, test_files))


def _unlabeled(root: Path, size: int, store: Optional[FolderStore], progress: bool) -> FolderImages:
    _refuse_test_split(root)
    files = image_files(root)
    if not files:
        raise DataError(f"the image folder {root} holds no images ({', '.join(EXTENSIONS)}): set data.root to a "
                        "folder that does")
    mapped = store is not None and store.mapped(len(files), size)
    x = _decode(files, size, f"decoding {root.name}/", store if mapped else None, "unlabeled", progress)
    return FolderImages(x, None, None, None, [], _relative(root, files), None)


def _relative(root: Path, files: list[Path]) -> tuple[str, ...]:
    """``files`` (found under ``root``) as paths relative to it, with ``/`` separators."""
    return tuple(f.relative_to(root).as_posix() for f in files)


def _refuse_test_split(root: Path) -> None:
    """``DataError`` when ``root`` is the ``test/`` of a labelled folder (a ``train/`` beside it)."""
    parent = root.resolve().parent
    if root.resolve().name == "test" and (parent / "train").is_dir():
        raise DataError(f"data.root={root} is the test split of the labelled image folder {parent} (train/ is beside "
                        "it): pretraining on it trains on the images evaluations test on; give "
                        f"data.root={parent} (trains on train/, tests on test/) or data.root={parent / 'train'}")


def _split_dir(root: Path, split: str) -> Path:
    if not is_labelled(root):
        raise DataError(f"the image folder {root} has no train/ or test/ folder: the labelled layout is "
                        "train/<class>/ and test/<class>/ (any other tree of images is read without labels)")
    if not (root / split).is_dir():
        other = "test" if split == "train" else "train"
        raise DataError(f"the image folder {root} has {other}/ but no {split}/ folder: a labelled folder holds "
                        f"train/<class>/ and test/<class>/; to pretrain without labels on the images in {other}/, "
                        f"give data.root={root / other}")
    return root / split


def _class_names(train_dir: Path) -> list[str]:
    classes = sub_dirs(train_dir)
    if not classes:
        raise DataError(f"{train_dir} holds no class folders: put each class's images in {train_dir}/<class>/, or "
                        f"give data.root={train_dir} to pretrain on its images without labels")
    return classes


def _list_files(split_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """The image files of a split in (class, path) order, and their labels."""
    unknown = [c for c in sub_dirs(split_dir) if c not in classes]
    if unknown:
        raise DataError(f"{split_dir / unknown[0]} is a class that {split_dir.parent / 'train'} does not have: "
                        "add it to train/ or remove it")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        if not (split_dir / name).is_dir():
            continue  # a test split may lack a class
        found = image_files(split_dir / name)
        if not found:
            raise DataError(f"{split_dir / name} holds no images ({', '.join(EXTENSIONS)}): add some or remove it")
        files += found
        labels += [label] * len(found)
    if not files:
        raise DataError(f"{split_dir} holds no class folders with images: put them in {split_dir}/<class>/")
    return files, labels


def _decode(files: list[Path], size: int, desc: str, store: Optional[FolderStore], split: str,
            progress: bool = True) -> Tensor:
    """``files`` -> ``[len(files), size, size, 3] uint8``: in memory, or from ``store``'s cache file of ``split``."""
    if store is not None:
        return store.load(split, files, size, functools.partial(_decode_into, progress=progress), desc)
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    _decode_into(files, size, desc, out, progress)
    return torch.from_numpy(out)


def _decode_into(files: list[Path], size: int, desc: str, out: np.ndarray, progress: bool = True) -> None:
    """Decode ``files`` on a few threads, in order, into ``out: [len(files), size, size, 3] uint8`` (an array in
    memory or a memory-mapped file). ``progress``: once the decoding has taken a few seconds (a folder of thousands
    of photos), a bar on a terminal or a plain line every 30 s in a log (:func:`maelab.progress.phase`); a small
    folder decodes in silence."""
    pool = ThreadPoolExecutor(min(MAX_WORKERS, os.cpu_count() or 1))
    try:
        decoded = pool.map(decode_image, files, itertools.repeat(size))
        with phase(len(files), desc, "image", enabled=progress) as bar:
            for i, img in enumerate(decoded):
                out[i] = img
                bar.update()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after an error, the queued files are not decoded


def decode_image(path: Path, size: int) -> np.ndarray:
    """One image file -> ``[size, size, 3] uint8`` RGB, upright by its EXIF Orientation tag, stretched to a square.
    ``DataError`` if it cannot be decoded."""
    try:
        # opened from a file object, not by name: Pillow memory-maps an uncompressed TIFF opened by name and then
        # garbles one with an Orientation of 5..8 (a quarter turn; Pillow 13), which it turns upright itself
        with open(path, "rb") as f, Image.open(f) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale that is still >= size (faster)
            ImageOps.exif_transpose(img, in_place=True)  # upright, as viewers show it (EXIF Orientation tag)
            rgb = to_rgb8(img, path)
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)
    except DataError:
        raise
    except Exception as err:  # UnidentifiedImageError, truncated data (OSError), DecompressionBombError, ...
        detail = str(err).splitlines()[0] if str(err) else ""
        raise DataError(f"{path} cannot be decoded as an image ({type(err).__name__}"
                        f"{': ' + detail if detail else ''}): replace or delete the file") from None


def to_rgb8(img: Image.Image, path: Path) -> Image.Image:
    """An opened image of any mode the module docstring lists -> mode ``RGB`` (8 bits a channel), same size.

    ``path`` only names the file in a ``DataError`` (a mode with no known scale to 8 bits, or values outside it).
    """
    if img.mode in WIDE_MODES:
        grey = _scale_to_uint8(np.asarray(img), _full_scale(img), img.mode, path)  # [H, W] uint8
        return Image.fromarray(grey).convert("RGB")
    if img.mode not in RGB_MODES:
        raise DataError(f"{path} has the Pillow mode {img.mode}, which maelab cannot make 8-bit RGB: {FIX}")
    if img.mode == "La":
        img = img.convert("LA")  # premultiplied grey + alpha: Pillow converts La only to LA
    return img.convert("RGB")


def _full_scale(img: Image.Image) -> float:
    """The value of a ``WIDE_MODES`` image that becomes 255: 1 for float, else the largest 16-bit value, or a TIFF's
    declared ``2**bits - 1`` when it stores fewer bits (Pillow opens 12-bit TIFF samples as I;16 without scaling)."""
    if img.mode == "F":
        return 1.0
    bits = getattr(img, "tag_v2", {}).get(258) if img.mode.startswith("I;16") else None  # TIFF BitsPerSample
    return float(2 ** bits[0] - 1) if bits and 0 < bits[0] < 16 else 65535.0


def _scale_to_uint8(a: np.ndarray, full_scale: float, mode: str, path: Path) -> np.ndarray:
    """``a: [H, W]`` (uint16, int32 or float32) in ``[0, full_scale]`` -> ``[H, W] uint8``, linear and rounded.

    Written by hand because Pillow's ``convert`` from these modes clips at 255 instead of scaling. ``DataError``
    if a value lies outside ``[0, full_scale]`` (or is NaN): such an image has no known scale to 8 bits.
    """
    lo, hi = a.min(), a.max()
    if not (0 <= lo and hi <= full_scale):  # NaN fails both comparisons
        kind = "a floating-point" if mode == "F" else "an integer"
        nominal = "[0, 1]" if mode == "F" else f"0..{full_scale:.0f}"
        raise DataError(f"{path} is {kind} image (Pillow mode {mode}) with values {lo:.6g}..{hi:.6g}, outside "
                        f"{nominal}, so it has no known scale to 8 bits: rescale it to {nominal} or {FIX}")
    return np.rint(a.astype(np.float32) * np.float32(255.0 / full_scale)).astype(np.uint8)  # float32: exact enough
