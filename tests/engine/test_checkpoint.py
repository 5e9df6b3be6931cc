import errno
import io
import itertools
import os
import pickle
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from maelab.cli import main
from maelab.engine.checkpoint import load_checkpoint, save_checkpoint
from maelab.errors import UserError
from tests.conftest import TINY, after_banner


class Payload:
    """Unpickling this would create a file (if the loader allowed arbitrary globals)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_a_malicious_checkpoint_runs_nothing_and_is_one_clear_error(tmp_path, capsys):
    planted = tmp_path / "pwned"
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(pickle.dumps({"model": Payload(str(planted))}, protocol=2))
    with pytest.raises(UserError, match="cannot load checkpoint"):
        load_checkpoint(ckpt)
    assert main(["probe", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maelab: error: cannot load checkpoint") and len(err.strip().splitlines()) == 1
    assert not planted.exists()


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    assert load_checkpoint(path)["step"] == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def in_checkpoints(path: str) -> bool:
    return Path(path).parent.name == "checkpoints" or Path(path).name == "checkpoints"


def full_disk_on_save(monkeypatch, fail_at):
    """The checkpoint file of the ``fail_at``-th save takes a little, then the disk is full: its write raises ENOSPC
    (torch.save writing into such a file raised its zip writer's RuntimeError, "unexpected pos", not the OSError)."""
    real, calls = os.fdopen, itertools.count(1)

    class FullDisk(io.FileIO):
        def write(self, data):
            super().write(bytes(memoryview(data)[:16]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, mode="r", *args, **kwargs):  # counts the checkpoint files only (not run_info.json, say)
        if in_checkpoints(os.readlink(f"/proc/self/fd/{fd}")) and next(calls) == fail_at:
            return FullDisk(fd, "wb")
        return real(fd, mode, *args, **kwargs)

    monkeypatch.setattr("maelab.engine.checkpoint.os.fdopen", fdopen)


def no_write_permission(monkeypatch, fail_at):
    """The checkpoints folder refuses new files from the ``fail_at``-th save on (what chmod 555 does)."""
    real, calls = tempfile.mkstemp, itertools.count(1)

    def mkstemp(*args, **kwargs):
        if in_checkpoints(str(kwargs.get("dir", ""))) and next(calls) >= fail_at:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(*args, **kwargs)

    monkeypatch.setattr("maelab.atomic.tempfile.mkstemp", mkstemp)  # checkpoint.py: atomic.temp_beside


@pytest.mark.parametrize("fault,reason,fix", [
    (full_disk_on_save, "No space left on device", "free space on the disk holding"),
    (no_write_permission, "Permission denied", "writable"),
])
def test_a_full_or_unwritable_folder_at_checkpoint_time_is_one_clear_error(tmp_path, capsys, monkeypatch, fault,
                                                                          reason, fix):
    out = tmp_path / "run"
    args = [*TINY, "optim.epochs=3", "train.tensorboard=false", f"out_dir={out}"]
    fault(monkeypatch, fail_at=2)  # the epoch-1 checkpoint is written, the epoch-2 one fails
    assert main(["pretrain", *args]) == 2
    err = after_banner(capsys.readouterr().err)
    assert len(err) == 1 and "Traceback" not in err[0]
    err = err[0]
    assert err.startswith(f"maelab: error: cannot write the checkpoint {out / 'checkpoints' / 'last.pt'} ({reason})")
    assert fix in err and f"maelab pretrain --resume {out}" in err
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4  # the previous checkpoint, intact
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]
    monkeypatch.undo()  # space freed / permission given back: the run continues
    assert main(["pretrain", "--resume", str(out)]) == 0
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 12


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="chmod does not stop root from writing")
def test_a_read_only_checkpoints_folder_is_one_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", *TINY, "optim.epochs=1", "train.tensorboard=false", f"out_dir={out}"]) == 0
    before = (out / "checkpoints" / "last.pt").read_bytes()
    (out / "checkpoints").chmod(0o555)
    try:
        assert main(["pretrain", "--resume", str(out), "optim.epochs=2"]) == 2
    finally:
        (out / "checkpoints").chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write the checkpoint" in err[0] and "Permission denied" in err[0]
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


@pytest.mark.parametrize("content", [b"hi\n", b"", b"garbage" * 10])
def test_any_file_as_a_checkpoint_is_one_clear_error(tmp_path, content):
    path = tmp_path / "last.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"cannot load checkpoint .*: it is corrupt, truncated or not a maelab"):
        load_checkpoint(path)


def test_the_error_for_a_pickled_object_does_not_advise_loading_it_unsafely(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"model": Payload(str(tmp_path / "x"))}, path)
    with pytest.raises(UserError) as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value) and "objects other than tensors" in str(err.value)


@pytest.mark.parametrize("state", [{"a": 1}, [1, 2], {"model": {}, "config": {}}])
def test_a_checkpoint_without_what_a_resume_needs_names_the_missing_keys(tmp_path, state):
    path = tmp_path / "last.pt"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"is not a complete maelab checkpoint \(no .*step"):
        load_checkpoint(path, needs=("model", "optimizer", "step", "config", "rng"))


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1.6 MB tmpfs (skipped where this process may not mount one)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root in a mount namespace)")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_a_real_full_disk_is_the_clear_error_not_the_zip_writers(tiny_disk):
    # torch.save straight into the file raised "RuntimeError: [enforce fail at inline_container.cc] unexpected pos"
    with pytest.raises(UserError, match=r"cannot write the checkpoint .*last\.pt \(No space left on device\): free"):
        save_checkpoint({"w": torch.zeros(1000, 1000)}, tiny_disk / "checkpoints" / "last.pt")  # 4 MB
    assert list((tiny_disk / "checkpoints").iterdir()) == []  # no partial file left
