"""Reading a suite archive (:mod:`maelab.ablate.transfer`) safely: every member checked before it is extracted (no
link, nothing outside the folder), the whole gzip stream read (a truncated or damaged one is refused), and one
clear line for each way an archive can be wrong."""

from __future__ import annotations

import gzip
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from maelab.ablate.results import SUITE_NAME
from maelab.ablate.suite import SuiteSpec, suite_from_dict
from maelab.config.loading import load_yaml
from maelab.errors import UserError

PACK_AGAIN = "pack it again with `maelab ablate SUITE.yaml --out DIR --archive FILE`"
BROKEN = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)  # what a damaged .tar.gz raises on reading


def check_archive_file(archive: Path) -> Path:
    """Raises UserError when ``archive`` is not an existing file."""
    if not Path(archive).is_file():
        raise UserError(f"--merge {archive}: no such file: give the archive written by `maelab ablate SUITE.yaml "
                        "--out DIR --archive FILE`")
    return Path(archive)


def archive_suite(archive: Path) -> SuiteSpec:
    """The suite saved in ``archive`` (its suite.yaml). Raises UserError when the file is missing, corrupt or no
    suite archive."""
    check_archive_file(archive)
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                if str(PurePosixPath(member.name)) == SUITE_NAME and member.isfile():
                    return spec_of(tar.extractfile(member).read().decode(), archive)  # type: ignore[union-attr]
    except BROKEN as err:
        raise _corrupt(archive, err) from None
    raise _no_suite(archive)


def extract_checked(archive: Path, staging: Path) -> None:
    """Every member of ``archive`` into ``staging``, each checked first; the whole gzip stream is read, so that a
    truncated or damaged one is refused."""
    safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with gzip.open(archive, "rb") as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in tar:
                    _check_member(archive, member)
                    tar.extract(member, staging, **safe)
            while gz.read(1 << 20):  # to the stream's end: its length and CRC are checked there
                pass
    except BROKEN as err:
        raise _corrupt(archive, err) from None
    if not (staging / SUITE_NAME).is_file():
        raise _no_suite(archive)


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    path = PurePosixPath(member.name)
    if member.issym() or member.islnk():
        why = "is a link"
    elif not (member.isfile() or member.isdir()):
        why = "is not a file or a folder"
    elif path.is_absolute() or ".." in path.parts or "\\" in member.name:
        why = "points outside the folder"
    else:
        return
    raise UserError(f"{archive} is not a safe archive: its member {member.name!r} {why}; a maelab archive holds "
                    f"files of the suite folder only: {PACK_AGAIN}")


def spec_of(text: str, archive: Path) -> SuiteSpec:
    """The suite of an archive's suite.yaml ``text``. Raises UserError (ConfigError) when it is not one."""
    where = Path(f"{archive}:{SUITE_NAME}")
    try:
        return suite_from_dict(load_yaml(text, str(where)) or {}, where)
    except yaml.YAMLError as err:
        raise UserError(f"{where} is not valid YAML ({str(err).splitlines()[0]}): {PACK_AGAIN}") from None


def _corrupt(archive: Path, err: BaseException) -> UserError:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return UserError(f"{archive} is corrupt, truncated or not a .tar.gz ({reason}): copy it again, or {PACK_AGAIN}")


def _no_suite(archive: Path) -> UserError:
    return UserError(f"{archive} is not a maelab suite archive (no {SUITE_NAME} at its root): give the file written "
                     "by `maelab ablate SUITE.yaml --out DIR --archive FILE`")
