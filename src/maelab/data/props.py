"""PROPS-Classification (DeepRob, University of Michigan): find the folder or archive (or download it), load it.

The archive ``Progress-Objects-Sample.tar.gz`` holds ``Progress-Objects-Sample/meta.pkl`` and one pickle per
object instance, ``<class>_<k>.pkl``: a dict with ``data`` (uint8 ``[N, 32, 32, 3]``) and ``labels``.
``meta["test_split"]`` names the instances (file names without ``.pkl``) that form the test set; every other
instance is training data. A local archive is read in place (nothing is unpacked); a downloaded one is
checked against its md5 and unpacked into the cache. Every pickle goes through the restricted unpickler.
Instances are read in sorted file-name order, then each split is shuffled with a fixed seed, so the order is
the same on every machine and a split's first N images are not all one instance.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import Tensor

from maelab.config import DataConfig
from maelab.data.locate import find_data
from maelab.data.pickles import restricted_load
from maelab.errors import DataError

FOLDER = "Progress-Objects-Sample"
ARCHIVE = f"{FOLDER}.tar.gz"
META = "meta.pkl"
DRIVE_ID = "1C8_JFsnPVm392C-S1rH0y4HFfNkdMlXi"
# Google Drive's direct download (confirm=t skips the "cannot scan for viruses" page of large files).
URL = f"https://drive.usercontent.google.com/download?id={DRIVE_ID}&export=download&confirm=t"
MD5 = "b32c587684bb54a9f918b6b081a18e28"
CLASSES = ["master_chef_can", "cracker_box", "sugar_box", "tomato_soup_can", "mustard_bottle", "tuna_fish_can",
           "gelatin_box", "potted_meat_can", "mug", "large_marker"]
IMAGE_SHAPE = (32, 32, 3)
SHUFFLE_SEED = 0  # the fixed order of each split (independent of the run's seed)
_FIX = f"replace it with the official file (the archive {ARCHIVE}, Google Drive file {DRIVE_ID})"


def find_props(cfg: DataConfig) -> Path:
    """Return the ``Progress-Objects-Sample`` folder or a local ``Progress-Objects-Sample.tar.gz``.

    Looked for in data.root, $MAELAB_DATA_DIR, then the cache; downloaded into the cache from data.url
    (default: Google Drive) when found nowhere and data.download is on. Raises ``DataError`` naming the
    folders looked in.
    """
    try:
        return find_data(cfg, "PROPS", FOLDER, cfg.url or URL, cfg.md5 or MD5, archive=ARCHIVE)
    except DataError as err:
        if not cfg.download:
            raise
        raise DataError(f"{err} (if Google Drive refuses the download, fetch {ARCHIVE} by hand from "
                        f"https://drive.google.com/file/d/{DRIVE_ID} into data.root)") from None


def load_props(path: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load the PROPS folder or archive at ``path``.

    Returns ``x_train: [N, 32, 32, 3] uint8``, ``y_train: [N] int64``, ``x_test: [M, 32, 32, 3] uint8``,
    ``y_test: [M] int64`` (50,000 and 10,000 images in the official set), each split in a fixed shuffled order.
    Raises ``DataError`` naming the file and the fix on a missing, unsafe or malformed pickle.
    """
    path = Path(path)
    blobs = _read_archive(path) if path.is_file() else _read_folder(path)
    if META not in blobs:
        raise DataError(f"{META} is missing from {path}: the PROPS files are incomplete; {_FIX}")
    meta = restricted_load(io.BytesIO(blobs.pop(META)), _where(path, META), kind="PROPS meta.pkl")
    train, test = _split(meta, sorted(blobs), path)
    g = torch.Generator().manual_seed(SHUFFLE_SEED)
    x_train, y_train = _shuffled(*_stack(blobs, train, path), g)
    x_test, y_test = _shuffled(*_stack(blobs, test, path), g)
    return x_train, y_train, x_test, y_test


def _read_folder(folder: Path) -> dict[str, bytes]:
    """The bytes of every visible ``*.pkl`` file directly in ``folder``, by file name."""
    if not folder.is_dir():
        raise DataError(f"{folder} is neither a PROPS folder nor the {ARCHIVE} archive: set data.root")
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.pkl")) if _is_pickle_name(p.name) and p.is_file()}


def _read_archive(archive: Path) -> dict[str, bytes]:
    """The bytes of every visible regular ``Progress-Objects-Sample/*.pkl`` member of the archive, by file name.

    Members are only read, never extracted, so paths and links in the archive cannot write anywhere.
    """
    blobs = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:  # stream order: a gzip archive is read once, front to back
                parts = PurePosixPath(member.name).parts
                if member.isfile() and len(parts) == 2 and parts[0] == FOLDER and _is_pickle_name(parts[1]):
                    blobs[parts[1]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{archive} cannot be read as a tar archive ({type(err).__name__}): {_FIX}") from None
    if not blobs:
        raise DataError(f"{archive} has no {FOLDER}/*.pkl files: it is not the PROPS archive; {_FIX}")
    return blobs


def _is_pickle_name(name: str) -> bool:
    """``*.pkl``, skipping hidden files (e.g. the ``._*`` copies macOS tar adds)."""
    return name.endswith(".pkl") and not name.startswith(".")


def _where(path: Path, name: str) -> str:
    """How a file is named in errors: ``folder/name`` or ``name in archive``."""
    return f"{FOLDER}/{name} in {path}" if path.is_file() else str(path / name)


def _split(meta: object, names: list[str], path: Path) -> tuple[list[str], list[str]]:
    """Instance file names (sorted) -> (training files, test files), by ``meta["test_split"]``."""
    held_out = meta.get("test_split") if isinstance(meta, dict) else None
    if not isinstance(held_out, (list, tuple, set, frozenset, np.ndarray)) or \
            not all(isinstance(n, str) for n in held_out):
        raise DataError(f"{_where(path, META)} has no 'test_split' list of instance names: {_FIX}")
    wanted = sorted({n if n.endswith(".pkl") else f"{n}.pkl" for n in held_out})
    missing = [n for n in wanted if n not in names]
    if missing:
        raise DataError(f"{_where(path, missing[0])} (in meta.pkl's test_split) is missing: the PROPS files are "
                        f"incomplete ({len(missing)} test instance(s) missing); {_FIX}")
    test = set(wanted)
    return [n for n in names if n not in test], wanted


def _stack(blobs: dict[str, bytes], names: list[str], path: Path) -> tuple[Tensor, Tensor]:
    """Concatenate the instance pickles ``names`` -> ``x: [N, 32, 32, 3] uint8``, ``y: [N] int64``."""
    xs, ys = [], []
    for name in names:
        x, y = _instance(blobs[name], _where(path, name))
        xs.append(x)
        ys.append(y)
    if not xs:
        return torch.zeros((0, *IMAGE_SHAPE), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def _instance(blob: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    """One instance pickle -> ``x: [n, 32, 32, 3] uint8``, ``y: [n] int64`` (labels in [0, 10))."""
    entry = restricted_load(io.BytesIO(blob), what, kind="PROPS pickle")
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        raise DataError(f"{what} is not a PROPS pickle (no 'data' and 'labels' entries): {_FIX}")
    x, labels = entry["data"], entry["labels"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        got = f"{x.dtype} {list(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{what}: 'data' is {got}, expected uint8 [N, 32, 32, 3]; {_FIX}")
    y = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else np.asarray(None)
    if y.shape != (len(x),) or (len(x) and y.dtype.kind not in "iu"):
        raise DataError(f"{what}: 'labels' must be {len(x)} integers, got {y.dtype} {list(y.shape)}; {_FIX}")
    if len(y) and (y.min() < 0 or y.max() >= len(CLASSES)):
        raise DataError(f"{what}: labels must be in [0, {len(CLASSES)}), found {y.min()}..{y.max()}; {_FIX}")
    return np.ascontiguousarray(x), y.astype(np.int64)


def _shuffled(x: Tensor, y: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``x: [N, ...]``, ``y: [N]`` in the order of one permutation drawn from ``g``."""
    order = torch.randperm(len(x), generator=g)
    return x.index_select(0, order), y[order]
