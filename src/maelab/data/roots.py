"""What a ``data.root`` holds, so that a dataset that does not read it refuses it instead of training on other data.

CIFAR-10 and PROPS look in data.root, then $MAELAB_DATA_DIR and the cache, else download; the synthetic set
reads nothing. So a data.root of photos with data.name left at cifar10 would train on CIFAR-10 from elsewhere
(or download it) without a word. :func:`check_root` refuses, in one line naming the data.name that reads it, a
data.root that holds no data of the chosen dataset but holds another source's: image files (``folder``), the
CIFAR-10 batches (``cifar10``), the PROPS folder or archive (``props``). A data.root that does not exist or
holds none of these is left to the dataset (CIFAR-10 and PROPS then search on, as documented).
"""

from __future__ import annotations

from pathlib import Path

from maelab.config import DataConfig
from maelab.data.cifar10 import FOLDER as CIFAR10_FOLDER
from maelab.data.folder_files import holds_images
from maelab.data.locate import look_in
from maelab.data.props import ARCHIVE as PROPS_ARCHIVE
from maelab.data.props import FOLDER as PROPS_FOLDER
from maelab.errors import DataError

DOCS = "README.md#data"
WHAT = {"cifar10": "CIFAR-10", "props": "PROPS", "folder": "image files", "synthetic": "the synthetic set"}


class DataRootError(DataError):
    """data.root holds another dataset's files than data.name reads."""


def reads(name: str, root: Path) -> bool:
    """True when dataset ``name`` finds its files in ``root`` (the synthetic set reads none)."""
    if name == "cifar10":
        return look_in(root, CIFAR10_FOLDER, None) is not None
    if name == "props":
        return look_in(root, PROPS_FOLDER, PROPS_ARCHIVE) is not None
    return name == "folder" and holds_images(root)


def check_root(cfg: DataConfig) -> None:
    """``DataRootError`` when data.root holds no files of data.name's dataset but holds another's; checked before
    anything is searched elsewhere or downloaded."""
    if not cfg.root:
        return
    root = Path(cfg.root).expanduser()
    if reads(cfg.name, root):
        return
    other = next((name for name in ("cifar10", "props", "folder") if name != cfg.name and reads(name, root)), None)
    if other is None:
        return
    raise DataRootError(_message(cfg.root, cfg.name, other))


def _message(root: str, name: str, other: str) -> str:
    """One line: what ``root`` holds, that ``name`` does not read it, and the data.name that does."""
    held = "image files" if other == "folder" else f"{WHAT[other]} ({other_files(other)})"
    if name == "synthetic":
        return (f"data.root={root} holds {held}, and data.name=synthetic reads no folder (it generates its images): "
                f"set data.name={other} to train on them, or drop data.root ({DOCS})")
    if name == "cifar10":  # the default: the user may not have named it
        return f"data.root={root} holds {held}, not {WHAT[name]}: add data.name={other} ({DOCS})"
    return (f"data.root={root} holds {held}, not {WHAT[name]}: set data.name={other} instead of data.name={name} "
            f"({DOCS})")


def other_files(name: str) -> str:
    """How the files of dataset ``name`` look on disk, for messages."""
    return {"cifar10": f"{CIFAR10_FOLDER}/", "props": f"{PROPS_FOLDER}/ or {PROPS_ARCHIVE}"}.get(name, "images")
