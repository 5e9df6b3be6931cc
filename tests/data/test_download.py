"""Download into the cache, for real, from a local HTTP server: fetched, checked, unpacked, all or nothing.

The fake archive holds the official layout with 4 images per batch, so the unpacked folder is
loaded with ``rows_per_batch=4`` (the default count check of 10000 is tested in test_cifar10.py).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import torch

from maelab.config import CIFAR10_MD5, DataConfig
from maelab.data.cifar10 import find_cifar10, load_cifar10
from maelab.errors import DataError

ARCHIVE = "cifar-10-python.tar.gz"


@pytest.fixture
def site(tmp_path, make_fake_cifar, make_archive):
    """A served folder holding a good archive: (url, md5, the source folder)."""
    source = make_fake_cifar(tmp_path / "source")
    served = tmp_path / "served"
    served.mkdir()
    md5 = make_archive(served / ARCHIVE, source)
    return served, md5, source


def _cfg(tmp_path: Path, url: str, md5: str, **kw) -> DataConfig:
    return DataConfig(url=url, md5=md5, cache_dir=str(tmp_path / "cache" / "maelab"), download=True, **kw)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_good_archive_is_fetched_checked_and_unpacked(tmp_path, site, serve_dir, no_data_env,
                                                      closed_port_url) -> None:
    served, md5, source = site
    cfg = _cfg(tmp_path, f"{serve_dir(served)}/{ARCHIVE}", md5)
    folder = find_cifar10(cfg)
    cache = tmp_path / "cache" / "maelab"
    assert folder == cache / "cifar-10-batches-py"
    assert _listing(cache) == ["cifar-10-batches-py"] + [f"cifar-10-batches-py/{p}" for p in _listing(source)]
    for path in source.iterdir():
        assert (folder / path.name).read_bytes() == path.read_bytes()
    x_train, y_train, x_test, y_test = load_cifar10(folder, rows_per_batch=4)
    assert x_train.shape == (20, 32, 32, 3) and x_test.dtype == torch.uint8
    # found in the cache next time: no second download (the URL now goes nowhere)
    assert find_cifar10(_cfg(tmp_path, closed_port_url, md5)) == folder


def test_wrong_md5_is_refused_and_leaves_nothing(tmp_path, site, serve_dir, no_data_env) -> None:
    served, md5, _ = site
    cfg = _cfg(tmp_path, f"{serve_dir(served)}/{ARCHIVE}", "0" * 32)
    with pytest.raises(DataError, match=f"has md5 {md5}, expected 0{{32}}") as info:
        find_cifar10(cfg)
    assert "\n" not in str(info.value)
    assert _listing(tmp_path / "cache" / "maelab") == []


def test_unreachable_url_gives_one_clear_error(tmp_path, closed_port_url, no_data_env) -> None:
    cfg = _cfg(tmp_path, closed_port_url, "0" * 32, root=str(tmp_path / "root"))
    with pytest.raises(DataError) as info:
        find_cifar10(cfg)
    message = str(info.value)
    assert message.startswith("CIFAR-10 not found: no cifar-10-batches-py/ in ")
    assert str(tmp_path / "root") in message and str(tmp_path / "cache" / "maelab") in message
    assert "download of" in message and "failed" in message
    assert message.endswith("put cifar-10-batches-py/ in one of them, set MAELAB_DATA_DIR or data.root")
    assert "\n" not in message
    assert not (tmp_path / "cache").exists()  # nor the cache folders it made to download into


def test_missing_file_on_server(tmp_path, site, serve_dir, no_data_env) -> None:
    served, md5, _ = site
    with pytest.raises(DataError, match="failed"):
        find_cifar10(_cfg(tmp_path, f"{serve_dir(served)}/nothing.tar.gz", md5))
    assert _listing(tmp_path / "cache" / "maelab") == []


def _tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"x"


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


@pytest.mark.parametrize(
    ("members", "pattern"),
    [
        ([_file("cifar-10-batches-py/data_batch_1"), _file("../escaped")], "unsafe path '../escaped'"),
        ([_file("cifar-10-batches-py/../../escaped")], "unsafe path"),
        ([_file("/tmp/maelab-test-absolute")], "unsafe path '/tmp/maelab-test-absolute'"),
        ([_link("cifar-10-batches-py/data_batch_1", "/etc/passwd")], "link or special file"),
        ([_file("something-else/data_batch_1")], "has no cifar-10-batches-py/ folder"),
    ],
)
def test_unsafe_or_unexpected_archive_is_refused(tmp_path, serve_dir, no_data_env, members, pattern) -> None:
    served = tmp_path / "served"
    served.mkdir()
    _tar_with(served / ARCHIVE, members)
    md5 = hashlib.md5((served / ARCHIVE).read_bytes()).hexdigest()
    with pytest.raises(DataError, match=pattern):
        find_cifar10(_cfg(tmp_path, f"{serve_dir(served)}/{ARCHIVE}", md5))
    assert _listing(tmp_path / "cache" / "maelab") == []
    assert not (tmp_path / "cache" / "escaped").exists() and not (tmp_path / "escaped").exists()


def test_corrupt_archive_with_right_md5_is_refused(tmp_path, serve_dir, no_data_env) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / ARCHIVE).write_bytes(b"this is not gzip data")
    md5 = hashlib.md5(b"this is not gzip data").hexdigest()
    with pytest.raises(DataError, match="cannot be unpacked"):
        find_cifar10(_cfg(tmp_path, f"{serve_dir(served)}/{ARCHIVE}", md5))
    assert _listing(tmp_path / "cache" / "maelab") == []


class _CutShort(BaseHTTPRequestHandler):
    """Serves the first third of ``body``, announcing its whole length (or no length), then closes: a connection that
    dropped mid-download."""

    body = b""
    announce = True

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self.send_response(200)
        if self.announce:
            self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[:len(self.body) // 3])
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def cut_short_url(http_server):
    def serve(body: bytes, announce: bool = True) -> str:
        handler = type("Handler", (_CutShort,), {"body": body, "announce": announce})
        return f"{http_server(handler)}/{ARCHIVE}"

    return serve


def test_a_download_cut_short_says_so_not_that_the_archive_is_wrong(tmp_path, site, cut_short_url,
                                                                     no_data_env) -> None:
    served, md5, _ = site
    body = (served / ARCHIVE).read_bytes()
    with pytest.raises(DataError) as info:
        find_cifar10(_cfg(tmp_path, cut_short_url(body), md5))
    message = str(info.value)
    assert f"was cut short ({len(body) // 3} of {len(body)} bytes): the connection ended early; run again" in message
    assert "md5" not in message and "official" not in message and "\n" not in message
    assert _listing(tmp_path / "cache" / "maelab") == []


def test_without_an_announced_length_the_official_archive_is_held_to_its_known_size(tmp_path, cut_short_url,
                                                                                    no_data_env) -> None:
    cfg = _cfg(tmp_path, cut_short_url(b"x" * 3000, announce=False), CIFAR10_MD5)
    with pytest.raises(DataError, match=r"was cut short \(1000 of 170498071 bytes\)"):
        find_cifar10(cfg)
    assert _listing(tmp_path / "cache" / "maelab") == []


def test_a_folder_looked_in_once_is_named_once_and_the_hint_fits_it(tmp_path, closed_port_url, no_data_env) -> None:
    cache = tmp_path / "cache" / "maelab"
    for root in (None, str(cache)):  # the cache alone, or data.root pointing at the cache itself
        with pytest.raises(DataError) as info:
            find_cifar10(_cfg(tmp_path, closed_port_url, "0" * 32, root=root))
        message = str(info.value)
        assert message.count(str(cache)) == 1 and "put cifar-10-batches-py/ there," in message
