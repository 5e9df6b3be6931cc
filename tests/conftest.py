"""Shared fixtures: where the real CIFAR-10 copy is, and tiny configs for fast runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The folder holding cifar-10-batches-py/: $MAELAB_DATA_DIR, else ../shared/data beside the repo."""
    candidates = [os.environ.get("MAELAB_DATA_DIR"), str(REPO.parent / "shared" / "data")]
    for c in candidates:
        if c and (Path(c) / "cifar-10-batches-py").is_dir():
            return Path(c).resolve()
    return None


@pytest.fixture(scope="session", autouse=True)
def cpu_kernel_built() -> None:
    """Build maelab's CPU attention kernel once, up front: the subprocesses tests start (and kill) then load it
    from torch's extension cache instead of building it at the same time."""
    from maelab.models.cpu import build

    build.available()


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("CIFAR-10 not found: set MAELAB_DATA_DIR to the folder holding cifar-10-batches-py/")
    return found


# A run that takes about a second on 2 CPU cores: micro model, 256 synthetic images, batch 64.
TINY = [
    "data.name=synthetic", "data.synthetic_train=256", "data.synthetic_test=64",
    "model.preset=micro", "optim.batch_size=64", "optim.lr=2e-3", "optim.warmup_fraction=0.1",
    "train.progress=false", "train.log_every=2",
]


@pytest.fixture
def tiny() -> list[str]:
    return list(TINY)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """A test that sets torch's CPU threads (train.threads) must not change the float results of the next ones
    (bit-exact comparisons between this process and a subprocess need the same thread count)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
