"""Fetch an archive, check its md5 and unpack one folder of it into a cache, all or nothing.

Everything is written to temporary names inside the cache directory and renamed into place
only once complete, so a failure (network, checksum, unsafe archive) leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath

from maelab.errors import DataError

TIMEOUT_S = 30.0
_CHUNK = 1 << 20
# the size of an official archive, by its md5: what a download is held to when the server announces no length
KNOWN_SIZES = {"c58f30108f718f92721af3b95e74349a": 170_498_071}  # cifar-10-python.tar.gz


def download_folder(url: str, md5: str, cache_dir: Path, folder: str, timeout: float = TIMEOUT_S) -> Path:
    """Download the tar archive at ``url`` and unpack its top folder ``folder`` to ``cache_dir/folder``.

    Raises ``DataError`` (with a one-line reason) on a network error, a checksum mismatch or an
    unsafe or unexpected archive; in that case ``cache_dir`` holds no archive and no partial folder.
    """
    target = cache_dir / folder
    made = [d for d in (cache_dir, *cache_dir.parents) if not d.exists()]  # the folders this call creates
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the cache directory {cache_dir} ({err.strerror}): set data.cache_dir") from None
    try:
        archive = _fetch(url, md5, cache_dir, timeout)
        try:
            _unpack(archive, cache_dir, folder, target)
        finally:
            archive.unlink(missing_ok=True)
    except BaseException:
        for d in made:  # innermost first: a failed download leaves no folder it made (those it found stay)
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return target


def _fetch(url: str, md5: str, cache_dir: Path, timeout: float) -> Path:
    """Stream ``url`` to a temporary file in ``cache_dir`` and return it once complete (as long as the server
    announced, or the official archive's known size) and its md5 matches."""
    print(f"maelab: downloading {url} into {cache_dir}", file=sys.stderr)
    fd, name = tempfile.mkstemp(dir=cache_dir, prefix=".download-", suffix=".part")
    path = Path(name)
    digest = hashlib.md5()
    received, expected = 0, None
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            expected = _announced_size(response) or KNOWN_SIZES.get(md5.lower())
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
    except (OSError, ValueError, http.client.HTTPException) as err:  # URLError, HTTPError, timeouts: OSErrors;
        path.unlink(missing_ok=True)  # a bad URL: ValueError; a connection closed mid-body: IncompleteRead
        reason = getattr(err, "reason", None) or err
        raise DataError(f"download of {url} failed ({str(reason).splitlines()[0]})") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if expected is not None and received < expected:
        path.unlink(missing_ok=True)
        raise DataError(f"the download of {url} was cut short ({received} of {expected} bytes): the connection "
                        "ended early; run again to download it again")
    if digest.hexdigest() != md5.lower():
        path.unlink(missing_ok=True)
        raise DataError(f"download of {url} has md5 {digest.hexdigest()}, expected {md5}: the file is not the official "
                        "archive (check data.url and data.md5)")
    return path


def _announced_size(response: http.client.HTTPResponse) -> int | None:
    """The Content-Length the server sent (bytes; None when absent, unreadable or for a compressed transfer)."""
    if response.headers.get("Content-Encoding", "identity") != "identity":
        return None
    try:
        size = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return size if size >= 0 else None


def _unpack(archive: Path, cache_dir: Path, folder: str, target: Path) -> None:
    """Extract ``archive`` into a temporary folder in ``cache_dir``, then rename ``folder`` to ``target``."""
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".extract-"))
    try:
        _safe_extract(archive, tmp)
        unpacked = tmp / folder
        if not unpacked.is_dir():
            raise DataError(f"the downloaded archive has no {folder}/ folder: check data.url")
        try:
            os.rename(unpacked, target)
        except OSError:
            if not target.is_dir():  # else another process (another rank) unpacked it first: use theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive, refusing absolute paths, ``..`` components, links and special files."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # Python without extraction filters: our checks above are the guard
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"the downloaded archive cannot be unpacked ({type(err).__name__}): check data.url") from None


def _check_member(member: tarfile.TarInfo) -> None:
    path = PurePosixPath(member.name)
    if member.name.startswith(("/", "\\")) or path.is_absolute() or ".." in path.parts or ":" in member.name:
        raise DataError(f"the downloaded archive holds an unsafe path {member.name!r}: refusing to unpack it")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"the downloaded archive holds a link or special file {member.name!r}: refusing to unpack it")
