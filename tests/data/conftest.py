"""Fixtures for the data tests: fake CIFAR-10 folders and archives, and a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import pickle
import socket
import tarfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

FOLDER = "cifar-10-batches-py"
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
FAKE_ROWS = 4  # images per fake batch


def write_batch(path: Path, rows: int = FAKE_ROWS, seed: int = 0, **entries: object) -> None:
    """A CIFAR-10-format batch (protocol-2 pickle) of random images; ``entries`` override its keys."""
    rng = np.random.default_rng(seed)
    batch = {
        "batch_label": f"fake batch {seed}",
        "data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
        "labels": [int(i % 10) for i in range(rows)],
        "filenames": [f"img_{seed}_{i}.png" for i in range(rows)],
    }
    batch.update(entries)
    path.write_bytes(pickle.dumps(batch, protocol=2))


def make_fake_cifar(root: Path, rows: int = FAKE_ROWS) -> Path:
    """``root/cifar-10-batches-py`` with six small batches and a meta file; returns the folder."""
    folder = root / FOLDER
    folder.mkdir(parents=True)
    for seed, name in enumerate(BATCHES):
        write_batch(folder / name, rows, seed)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a"] * 10}, protocol=2))
    return folder


def make_archive(path: Path, source: Path, arcname: str = FOLDER) -> str:
    """Pack ``source`` as ``arcname`` into a .tar.gz at ``path``; returns its md5."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(name="make_fake_cifar")
def make_fake_cifar_fixture() -> Callable[..., Path]:
    return make_fake_cifar


@pytest.fixture(name="write_batch")
def write_batch_fixture() -> Callable[..., None]:
    return write_batch


@pytest.fixture(name="make_archive")
def make_archive_fixture() -> Callable[..., str]:
    return make_archive


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def http_server() -> Iterator[Callable[[Callable[..., BaseHTTPRequestHandler]], str]]:
    """``http_server(handler)`` serves ``handler`` on 127.0.0.1 (a free port) and returns its base URL; every server
    started is shut down after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(handler: Callable[..., BaseHTTPRequestHandler]) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def serve_dir(http_server) -> Callable[[Path], str]:
    """``serve_dir(folder)`` serves ``folder`` on 127.0.0.1 (a free port) and returns its base URL."""
    return lambda directory: http_server(functools.partial(_QuietHandler, directory=str(directory)))


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


@pytest.fixture
def no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide a MAELAB_DATA_DIR the developer may have set."""
    monkeypatch.delenv("MAELAB_DATA_DIR", raising=False)
