"""Shared fixtures: where the real CIFAR-10 copy is, and tiny configs for fast runs."""

from __future__ import annotations

import os
import re
import signal
import time
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# PyTorch's ops in the tests (MAELAB_CPU_KERNELS=0), the path CUDA runs and the one the timing picks on AVX2 CPUs:
# a timing on a loaded machine could choose otherwise in a test's subprocess than in the test, and their numbers
# would differ by float rounding; and on an AVX2 CPU maelab's attention kernel made every training test 1.6x
# slower. The fast paths have their own tests (tests/models/cpu/, where every one is on), the timed choice too.
os.environ.setdefault("MAELAB_CPU_KERNELS", "0")
# So no test outside tests/models/cpu/ builds maelab's CPU kernel, and no subprocess a test starts (or kills) loads
# it: its first test builds it there (a fresh clone: ~25 s, under the build's lock), while the other worker goes on.


def shared_data_dir() -> Path | None:
    """The folder holding cifar-10-batches-py/: $MAELAB_DATA_DIR, else ../shared/data beside the repo."""
    candidates = [os.environ.get("MAELAB_DATA_DIR"), str(REPO.parent / "shared" / "data")]
    for c in candidates:
        if c and (Path(c) / "cifar-10-batches-py").is_dir():
            return Path(c).resolve()
    return None


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("CIFAR-10 not found: set MAELAB_DATA_DIR to the folder holding cifar-10-batches-py/")
    return found


@pytest.fixture(scope="session")
def finished_suite(tmp_path_factory) -> tuple[Path, Path]:
    """(suite file, ablation folder) of tests/ablate/conftest.py's tiny suite run once; copy the folder before
    changing it (tests/ablate and tests/bench share it)."""
    from maelab.ablate import load_suite, run_suite
    from tests.ablate.conftest import write_suite

    root = tmp_path_factory.mktemp("ablate")
    path = write_suite(root / "suite")
    out = root / "out"
    run_suite(load_suite(path), out, "maelab ablate suite.yaml", log=lambda _: None)
    return path, out


# A run that takes about a second on 2 CPU cores: micro model, 256 synthetic images, batch 64.
TINY = [
    "data.name=synthetic", "data.synthetic_train=256", "data.synthetic_test=64",
    "model.preset=micro", "optim.batch_size=64", "optim.lr=2e-3", "optim.warmup_fraction=0.1",
    "train.progress=false", "train.log_every=2",
]


BANNER_LINES = 4  # maelab.engine.banner.banner_lines: what a run says when it starts
FEW_STEPS = re.compile(r"maelab: warning: only \d+ optimizer steps ")  # maelab.engine.run.few_steps_warning


def after_banner(err: str) -> list[str]:
    """The lines of ``err`` (captured stderr) without the start banners of runs in it (nor the warning of a run of
    few steps, which the tests' tiny runs are): what a test of an error line checks is one line."""
    lines, kept = err.strip().splitlines(), []
    while lines:
        if lines[0].startswith(("maelab: starting: ", "maelab: resuming at step ")):
            lines = lines[BANNER_LINES:]
        elif FEW_STEPS.match(lines[0]):
            lines.pop(0)
        else:
            kept.append(lines.pop(0))
    return kept


@pytest.fixture(scope="session")
def one_epoch_run(tmp_path_factory) -> Path:
    """A run of the tiny config trained one epoch, shared by the session: tests copy it before they change it."""
    from maelab.config import load_config
    from maelab.engine.pretrain import pretrain

    return pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false",
                                       f"out_dir={tmp_path_factory.mktemp('one_epoch') / 'run'}"]))


@pytest.fixture
def tiny() -> list[str]:
    return list(TINY)


def session_processes() -> set[int]:
    """The live processes this one started, directly or through its children: what a test may leave behind (an
    orphan, re-parented when its parent exited, is not seen)."""
    proc, parent = Path("/proc"), {}
    if not proc.is_dir():
        return set()
    sid = os.getsid(0)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid, _pgrp, session = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, ValueError):
            continue
        if int(session) == sid and state not in ("Z", "X"):
            parent[int(entry.name)] = int(ppid)

    def mine(pid: int) -> bool:
        for _ in range(64):
            pid = parent.get(pid, 0)
            if pid == os.getpid():
                return True
            if pid not in parent:
                return False
        return False

    return {pid for pid in parent if pid != os.getpid() and mine(pid)}


@pytest.fixture(autouse=True)
def no_process_left_behind():
    """A process a test started and left running (a worker, a job, a torchrun rank) is killed after the test with
    a warning naming it: left alone it would slow every later test of the session (a CI run's timeouts)."""
    before = session_processes()
    yield
    deadline = time.monotonic() + 5
    while (left := session_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.1)  # a process signalled at the test's end may still be exiting
    for pid in left:
        try:
            command = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
        warnings.warn(f"a test left process {pid} running ({command}); killed", stacklevel=1)


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """A test that sets torch's CPU threads (train.threads) must not change the float results of the next ones
    (bit-exact comparisons between this process and a subprocess need the same thread count)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
