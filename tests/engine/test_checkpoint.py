import os
import pickle

import pytest
import torch

from maelab.cli import main
from maelab.engine.checkpoint import load_checkpoint, save_checkpoint
from maelab.errors import UserError


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
