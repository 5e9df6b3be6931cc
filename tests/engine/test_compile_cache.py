"""train.compile_cache: inductor's artifacts saved after the first step and hot-loaded by the next run, so that a
warm start compiles from the cache instead of building again."""

import pytest
import torch
from torch._dynamo.utils import counters

from maelab.engine.compile_cache import load_compile_cache, save_compile_cache, with_compile_cache


@pytest.fixture
def empty_inductor_cache(tmp_path, monkeypatch):
    """A fresh on-disk inductor cache for each use, so that only a hot-loaded file can make a compile warm."""
    def fresh(name):
        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / name))
        torch._dynamo.reset()
        torch.compiler.reset()
        counters.clear()
    yield fresh
    torch._dynamo.reset()


def double_plus_one(x):
    return x * 2 + 1


@pytest.mark.slow  # one inductor build on the CPU (C++): about 20 s here
def test_a_saved_cache_makes_the_next_process_compile_warm(tmp_path, empty_inductor_cache):
    path = tmp_path / "compile_cache.bin"
    empty_inductor_cache("first")
    torch.compile(double_plus_one)(torch.ones(8))
    assert counters["inductor"]["fxgraph_cache_miss"] == 1  # built cold
    assert "written to" in save_compile_cache(path) and path.stat().st_size > 0
    empty_inductor_cache("second")  # a new machine: nothing on disk, nothing in memory
    assert "artifacts loaded from" in load_compile_cache(path)
    assert torch.equal(torch.compile(double_plus_one)(torch.ones(8)), torch.full((8,), 3.0))
    assert counters["inductor"]["fxgraph_cache_hit"] == 1 and counters["inductor"]["fxgraph_cache_miss"] == 0


def test_no_file_yet_is_a_cold_start_that_says_nothing(tmp_path):
    assert load_compile_cache(tmp_path / "none.bin") is None


def test_a_file_torch_cannot_read_is_reported_in_one_line_and_the_run_goes_on_cold(tmp_path, capsys):
    path = tmp_path / "cache.bin"
    path.write_bytes(b"not a cache")
    step = with_compile_cache(lambda x: x + 1, str(path))
    assert step(torch.ones(1)).item() == 2.0
    first, *_ = capsys.readouterr().err.splitlines()  # then the save after the first step says what it wrote
    assert first.startswith(f"maelab: compile cache {path} not used (") and first.endswith("compiling cold")


def test_the_cache_is_written_after_the_first_step_only(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr("maelab.engine.compile_cache.save_compile_cache", lambda path: written.append(path))
    step = with_compile_cache(lambda x: x, str(tmp_path / "c.bin"))
    for _ in range(3):
        step(torch.ones(1))
    assert written == [tmp_path / "c.bin"]
    assert with_compile_cache(double_plus_one, None) is double_plus_one  # no setting: the step as it was
