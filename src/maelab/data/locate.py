"""Finding a dataset's files on disk (data.root, then $MAELAB_DATA_DIR, then the cache), else downloading them.

Shared by every dataset that comes as a folder of files from one official archive (CIFAR-10, PROPS).
A folder that is found is never written to; a download goes into the cache, all or nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from maelab.config import DataConfig
from maelab.data.download import download_folder
from maelab.errors import DataError

ENV_VAR = "MAELAB_DATA_DIR"
DEFAULT_CACHE = "~/.cache/maelab"


def search_dirs(cfg: DataConfig) -> list[Path]:
    """The folders searched, in order: data.root, $MAELAB_DATA_DIR, the cache."""
    dirs = [Path(cfg.root).expanduser()] if cfg.root else []
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    dirs.append(cache_dir(cfg))
    return list(dict.fromkeys(dirs))  # a folder given twice (data.root = the cache) is looked in once


def cache_dir(cfg: DataConfig) -> Path:
    """Where downloads go: data.cache_dir, default ~/.cache/maelab."""
    return Path(cfg.cache_dir or DEFAULT_CACHE).expanduser()


def find_data(cfg: DataConfig, label: str, folder: str, url: str, md5: str, archive: Optional[str] = None) -> Path:
    """Return the dataset's ``folder`` (or, if ``archive`` is given, a local copy of that archive file).

    Each search dir may hold ``folder/`` or ``archive``, or be one of them itself; a folder wins over an
    archive in the same dir. When none is found and data.download is on, the archive at ``url`` is
    downloaded, checked against ``md5`` and unpacked into the cache. Raises ``DataError`` naming the
    folders looked in (``label`` names the dataset in it).
    """
    dirs = search_dirs(cfg)
    for d in dirs:
        found = look_in(d, folder, archive)
        if found is not None:
            return found
    names = f"{folder}/" + (f" or {archive}" if archive else "")
    looked = ", ".join(str(d) for d in dirs)
    how_to = f"put {names} {'in one of them' if len(dirs) > 1 else 'there'}, set {ENV_VAR} or data.root"
    if not cfg.download:
        raise DataError(f"{label} not found: no {names} in {looked} and data.download is off: {how_to}")
    try:
        return download_folder(url, md5, cache_dir(cfg), folder)
    except DataError as err:
        raise DataError(f"{label} not found: no {names} in {looked}, and {err}; {how_to}") from None


def look_in(d: Path, folder: str, archive: Optional[str]) -> Optional[Path]:
    """``d/folder``, ``d`` itself when it is that folder, else ``d/archive`` or ``d`` itself when it is that archive
    file; None when ``d`` holds none of them (or does not exist)."""
    if (d / folder).is_dir():
        return d / folder
    if d.name == folder and d.is_dir():  # pointed at the folder itself
        return d
    if archive and (d / archive).is_file():
        return d / archive
    if archive and d.name == archive and d.is_file():  # pointed at the archive itself
        return d
    return None
