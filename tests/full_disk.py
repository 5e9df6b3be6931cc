"""A full disk under one folder, for the tests of a command's writers: a real one (a small tmpfs mounted on the
folder and filled to the last byte, where this process may mount one: root, as here), else simulated the way
tests/engine/test_checkpoint.py simulates one (a file opened for writing under the folder takes 16 bytes, then
raises ENOSPC)."""

from __future__ import annotations

import errno
import io
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FILLER = ".filler"


def _fill(folder: Path) -> None:
    """Write a file into ``folder`` until its disk is full (unbuffered: nothing left to flush at close)."""
    fd = os.open(folder / FILLER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, b"\0" * 65536)  # the last one writes what fits; the next raises
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def _simulate(folder: Path, monkeypatch: pytest.MonkeyPatch, code: int = errno.ENOSPC) -> None:
    """Files opened for writing under ``folder`` (os.fdopen: every atomic writer) and safetensors files written there
    fail as on a full disk (``code`` ENOSPC) or a read-only one (EROFS)."""
    real_fdopen, inside = os.fdopen, str(folder.resolve()) + os.sep

    class FullDisk(io.FileIO):
        def write(self, data):
            super().write(bytes(memoryview(data)[:16]))
            raise OSError(code, os.strerror(code))

    def fdopen(fd, mode="r", *args, **kwargs):
        if "w" in mode and os.readlink(f"/proc/self/fd/{fd}").startswith(inside):
            raw = FullDisk(fd, "wb")
            return raw if "b" in mode else io.TextIOWrapper(raw, newline=kwargs.get("newline"))
        return real_fdopen(fd, mode, *args, **kwargs)

    def save_file(tensors, filename, metadata=None):  # safetensors' Rust writer: its error, naming the errno
        from safetensors import SafetensorError

        if str(Path(filename).resolve()).startswith(inside):
            raise SafetensorError(f"Error while serializing: I/O error: {os.strerror(code)} (os error {code})")
        return real_save_file(tensors, filename, metadata)

    import safetensors.torch

    real_save_file = safetensors.torch.save_file
    monkeypatch.setattr(os, "fdopen", fdopen)
    for module in ("maelab.export", "maelab.interop.hf_folder"):
        monkeypatch.setattr(f"{module}.save_file", save_file)


@contextmanager
def full_disk_at(folder: Path, size: str = "4m") -> Iterator[Callable[[], str]]:
    """``folder`` on a disk of ``size`` (a real tmpfs where it can be mounted); yields ``fill(read_only=False)``,
    which makes that disk full (or read-only) and returns "real" or "simulated". Unmounted (or the simulation
    undone) on the way out."""
    monkeypatch = pytest.MonkeyPatch()
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0

    def fill(read_only: bool = False) -> str:
        if mounted:
            if read_only:
                subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
            else:
                _fill(folder)
            return "real"
        _simulate(folder, monkeypatch, errno.EROFS if read_only else errno.ENOSPC)
        return "simulated"

    try:
        yield fill
    finally:
        monkeypatch.undo()
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def listing(folder: Path) -> dict[str, int]:
    """{relative path: size} of every file under ``folder`` but the filler (hidden files included)."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != FILLER}
