"""CIFAR-10 in the official python format: find the folder (or download it), load it, check it.

The integrity check of a local folder is a shape and count check, not a checksum: copies that are
rebuilt losslessly (like the one in ../shared/data) are not byte-identical to the official archive.
The md5 is checked only on what this module downloads itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from maelab.config import CIFAR10_MD5, CIFAR10_URL, DataConfig
from maelab.data.locate import find_data
from maelab.data.pickles import restricted_load
from maelab.errors import DataError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
ROWS_PER_BATCH = 10000
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# Per-channel pixel statistics of the training set in [0, 1] units (../shared/data/README.md).
TRAIN_MEAN = (0.49139968, 0.48215841, 0.44653091)
TRAIN_STD = (0.24703223, 0.24348513, 0.26158784)


def find_cifar10(cfg: DataConfig) -> Path:
    """Return the ``cifar-10-batches-py`` folder, downloading it into the cache if allowed and needed.

    Looked for in data.root, $MAELAB_DATA_DIR, then the cache (``locate.find_data``); never writes into a
    folder it finds. Raises ``DataError`` naming the folders looked in.
    """
    return find_data(cfg, "CIFAR-10", FOLDER, cfg.url or CIFAR10_URL, cfg.md5 or CIFAR10_MD5)


def load_cifar10(folder: Path, *, rows_per_batch: int = ROWS_PER_BATCH) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load and check the six batches of a ``cifar-10-batches-py`` folder.

    Returns ``x_train: [50000, 32, 32, 3] uint8``, ``y_train: [50000] int64``,
    ``x_test: [10000, 32, 32, 3] uint8``, ``y_test: [10000] int64``.
    ``rows_per_batch`` is the count each batch must hold (10000; tests of small fake archives lower it).
    Raises ``DataError`` naming the file and the fix on a missing or malformed batch.
    """
    folder = Path(folder)
    train = [_load_batch(folder / name, rows_per_batch) for name in TRAIN_FILES]
    x_test, y_test = _load_batch(folder / TEST_FILE, rows_per_batch)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test), torch.from_numpy(y_test))


def _load_batch(path: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> ``x: [rows, 32, 32, 3] uint8`` (HWC), ``y: [rows] int64``."""
    fix = f"replace it with the official file (or delete {path.parent} to download CIFAR-10 again)"
    if not path.is_file():
        raise DataError(f"{path} is missing: the CIFAR-10 folder is incomplete; {fix}")
    with path.open("rb") as f:
        batch = restricted_load(f, str(path))
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch (no 'data' and 'labels' entries): {fix}")
    return _check_data(batch["data"], path, rows, fix), _check_labels(batch["labels"], path, rows, fix)


def _check_data(data: object, path: Path, rows: int, fix: str) -> np.ndarray:
    """Channel-planar ``[rows, 3072]`` uint8 -> ``[rows, 32, 32, 3]`` uint8, contiguous."""
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (rows, 3072):
        got = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' is {got}, expected uint8 [{rows}, 3072]; {fix}")
    return np.ascontiguousarray(data.reshape(rows, 3, 32, 32).transpose(0, 2, 3, 1))


def _check_labels(labels: object, path: Path, rows: int, fix: str) -> np.ndarray:
    """A list of ``rows`` ints in [0, 10) -> ``[rows]`` int64."""
    y = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else np.asarray(None)
    if y.shape != (rows,) or y.dtype.kind not in "iu":
        raise DataError(f"{path}: 'labels' must be {rows} integers, got {y.dtype} {list(y.shape)}; {fix}")
    if rows and (y.min() < 0 or y.max() >= len(CLASSES)):
        raise DataError(f"{path}: labels must be in [0, {len(CLASSES)}), found {y.min()}..{y.max()}; {fix}")
    return y.astype(np.int64)
