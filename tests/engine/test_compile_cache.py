"""train.compile_cache: inductor's artifacts saved after the first step and hot-loaded by the next run, so that a
warm start compiles from the cache instead of building again."""

import pytest
import torch
from torch._dynamo.utils import counters

from maelab.config import load_config
from maelab.engine.compile_cache import CompileCache, load_compile_cache, save_compile_cache
from maelab.engine.run import build_run
from maelab.errors import UserError


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
    step = CompileCache(str(path)).wrap(lambda x: x + 1)
    assert step(torch.ones(1)).item() == 2.0
    first, *_ = capsys.readouterr().err.splitlines()  # then the save after the first step says what it wrote
    assert first.startswith(f"maelab: compile cache {path} not used (") and first.endswith("compiling cold")


def test_the_cache_is_written_after_the_first_step_and_when_training_ends_by_the_main_rank_only(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr("maelab.engine.compile_cache.save_compile_cache", lambda path: written.append(path))
    cache = CompileCache(str(tmp_path / "c.bin"))
    step = cache.wrap(lambda x: x)
    for _ in range(3):
        step(torch.ones(1))
    assert written == [tmp_path / "c.bin"]  # the first builds
    cache.save()  # the end of training: builds met later (K = 1 under CUDA graphs) reach the file too
    assert written == [tmp_path / "c.bin"] * 2
    other_rank = CompileCache(str(tmp_path / "c.bin"), main=False)
    other_rank.wrap(lambda x: x)(torch.ones(1))
    other_rank.save()
    assert len(written) == 2
    assert CompileCache(None).wrap(double_plus_one) is double_plus_one  # no setting: the step as it was


@pytest.mark.parametrize("setting,message", [
    ("{folder}", r"is a folder: give a file in it, e.g. train.compile_cache=.*compile_cache\.bin"),
    ("{folder}/missing/c.bin", r"its folder .*missing does not exist or is not writable"),
])
def test_a_cache_path_that_cannot_be_written_is_refused_before_anything_compiles(tmp_path, tiny, setting, message):
    cache = setting.format(folder=tmp_path)
    cfg = load_config(None, [*tiny, "train.compile=true", "train.compile_backend=aot_eager",
                             f"train.compile_cache={cache}"])
    with pytest.raises(UserError, match=message):
        build_run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_cache_on_a_run_that_compiles_nothing_is_refused_not_ignored(tmp_path, tiny):
    cfg = load_config(None, [*tiny, f"train.compile_cache={tmp_path / 'c.bin'}"])  # the CPU's default: eager
    with pytest.raises(UserError, match="read only by a run that compiles.*add train.compile=true, or drop"):
        build_run(cfg, tmp_path / "run")
