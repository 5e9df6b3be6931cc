"""torchrun / DistributedDataParallel: real 2-process gloo runs on the CPU, and the pieces they rest on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from maelab.config import AugConfig, load_config
from maelab.data import augment, epoch_batches, epoch_permutation
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.distributed import Dist, resume_step
from maelab.engine.pretrain import pretrain, resume
from maelab.masking import draw_mask
from maelab.shard import Shard
from tests.conftest import REPO, TINY

# 256 images, 32 per rank: 4 global steps of 64 per epoch; two of three epochs, then a resume
RUN = [*TINY, "optim.batch_size=32", "optim.epochs=3", "train.stop_after_epochs=2", "aug.preset=none",
       "train.threads=1", "train.seed=3"]


def torchrun(args: list[str], nproc: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node=N -m maelab ...`` with this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "maelab", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(checkpoint_path(run_dir))["model"]


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Equal within float tolerance, except the key part of each qkv bias: its true gradient is zero (softmax
    ignores a constant added to every key), so AdamW turns the rounding noise of the all-reduce into updates."""
    assert a.keys() == b.keys()
    for k in a:
        x, y = a[k], b[k]
        if k.endswith("attn.qkv.bias"):
            dim = len(x) // 3
            x, y = torch.cat([x[:dim], x[2 * dim:]]), torch.cat([y[:dim], y[2 * dim:]])
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=k)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_two_ranks_reach_the_weights_of_one_rank_with_twice_the_batch_and_write_the_run_once(tmp_path):
    two = tmp_path / "two"
    proc = torchrun(["pretrain", *RUN, f"out_dir={two}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run directory:") == 1  # rank 0 says it, once

    one = pretrain(load_config(None, [*RUN, "optim.batch_size=64", f"out_dir={tmp_path / 'one'}",
                                      "train.tensorboard=false"]))
    state_two, state_one = load_checkpoint(checkpoint_path(two)), load_checkpoint(checkpoint_path(one))
    assert state_two["step"] == state_one["step"] == 8 and state_two["world_size"] == 2
    assert state_two["global_batch"] == state_one["global_batch"] == 64
    assert_close(state_two["model"], state_one["model"])
    changed = [k for k in state_one["model"] if not torch.equal(state_one["model"][k], weights_at_init()[k])]
    assert len(changed) > 10  # the weights compared did train

    # written once: one config, one checkpoint, one TensorBoard file, each metrics line once, mean loss logged
    assert sorted(p.name for p in two.iterdir()) == ["checkpoints", "config.yaml", "metrics.jsonl", "run_info.json",
                                                  "tensorboard"]
    assert [p.name for p in (two / "checkpoints").iterdir()] == ["last.pt"]
    assert [start["world_size"] for start in json.loads((two / "run_info.json").read_text())] == [2]
    assert len(list((two / "tensorboard").iterdir())) == 1
    got, want = records(two), records(one)
    assert [(r["kind"], r["step"]) for r in got] == [(r["kind"], r["step"]) for r in want]
    for a, b in zip(got, want, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)  # the mean over the ranks = the global batch's
        assert a["mask_ratio"] == b["mask_ratio"]

    # the 2-rank checkpoint resumes with 1 rank (same global batch: the same last epoch as the 1-rank run)
    resume(two, ["optim.batch_size=64", "train.stop_after_epochs=null"])
    resume(one, ["train.stop_after_epochs=null"])
    assert load_checkpoint(checkpoint_path(two))["step"] == 12
    assert_close(weights(two), weights(one))
    assert [r["step"] for r in records(two)] == [r["step"] for r in records(one)]


def weights_at_init() -> dict[str, torch.Tensor]:
    from maelab.models import build_mae, resolve_spec

    cfg = load_config(None, RUN)
    torch.manual_seed(cfg.train.seed)
    return build_mae(resolve_spec(cfg.model)).state_dict()


def test_an_error_on_rank_0_stops_every_rank_with_one_line(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "config.yaml").write_text("name: someone else's run\n")
    proc = torchrun(["pretrain", *RUN, f"out_dir={out}"])
    assert proc.returncode != 0
    assert proc.stderr.count("already holds a run") == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr.split("already holds a run")[0]
    assert (out / "config.yaml").read_text() == "name: someone else's run\n"


def test_resume_step_maps_by_images_seen() -> None:
    # unchanged global batch: the same step
    assert resume_step(13, 8, 64, 8, 64) == 13
    # 2 ranks x 32 -> 1 rank x 32: epoch boundaries stay epoch boundaries
    assert resume_step(8, 4, 64, 8, 32) == 16
    # mid-epoch: 2 of 4 global batches of 64 done (128 images) -> 4 batches of 32 done
    assert resume_step(6, 4, 64, 8, 32) == 12
    # a larger global batch rounds down: 3 x 32 = 96 images -> one batch of 64 (32 images trained again)
    assert resume_step(11, 8, 32, 4, 64) == 5
    # never past the epoch's end
    assert resume_step(7, 8, 32, 2, 100) == 2


def test_shards_of_every_epoch_are_disjoint_and_together_the_permutation() -> None:
    for epoch in range(3):
        shards = [epoch_batches(96, 8, seed=4, epoch=epoch, rank=r, world_size=3) for r in range(3)]
        steps = [torch.cat([shards[r][s] for r in range(3)]) for s in range(len(shards[0]))]
        assert torch.equal(torch.cat(steps), epoch_permutation(96, 4, epoch))
        for s in range(len(steps)):
            assert len(set(steps[s].tolist())) == 24


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_a_shards_masks_are_its_rows_of_the_global_batchs_masks() -> None:
    whole = draw_mask(8, 64, 0.75, generator=gen(1))
    ratios = torch.linspace(0.1, 0.9, 8, dtype=torch.float64)
    whole_ps = draw_mask(8, 64, ratios, generator=gen(2))
    for rank in range(2):
        rows = slice(4 * rank, 4 * rank + 4)
        part = draw_mask(4, 64, 0.75, generator=gen(1), shard=Shard(rank, 2))
        assert all(torch.equal(p, w[rows]) for p, w in zip(part[:4], whole[:4], strict=True))
        part_ps = draw_mask(4, 64, ratios[rows], generator=gen(2), shard=Shard(rank, 2))
        assert torch.equal(part_ps.binary, whole_ps.binary[rows])
        assert torch.equal(part_ps.ids_restore, whole_ps.ids_restore[rows])


@pytest.mark.parametrize("cfg", [AugConfig(preset="mae"), AugConfig(preset="seed5"),
                                 AugConfig(preset="seed3", base="keras")])
def test_a_shards_augmentation_is_its_rows_of_the_global_batchs(cfg) -> None:
    imgs = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8)
    whole = augment(imgs, cfg, 32, gen(7))
    for rank in range(3):
        part = augment(imgs[2 * rank:2 * rank + 2], cfg, 32, gen(7), shard=Shard(rank, 3))
        torch.testing.assert_close(part, whole[2 * rank:2 * rank + 2], rtol=0, atol=1e-6)
    assert not torch.allclose(augment(imgs[:2], cfg, 32, gen(7), shard=Shard(1, 3)), whole[:2])


def test_alone_every_helper_is_the_identity() -> None:
    dist = Dist()
    assert not dist.enabled and dist.is_main and dist.shard == Shard()
    t = torch.tensor(2.5)
    assert dist.mean(t) is t and dist.main_only(lambda x: x + 1, 1) == 2 and dist.agree_max(3) == 3


def worker_pid(agent: subprocess.Popen, rank: int) -> int | None:
    """The pid of torchrun's worker ``rank`` (Linux /proc), or None while it is not started."""
    try:
        children = Path(f"/proc/{agent.pid}/task/{agent.pid}/children").read_text().split()
        for pid in children:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if f"RANK={rank}".encode() in env:
                return int(pid)
    except OSError:
        return None
    return None


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker through /proc (Linux)")
def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    args = [*RUN, "optim.epochs=50", "train.stop_after_epochs=null", "train.tensorboard=false", f"out_dir={out}"]
    agent = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              "-m", "maelab", "pretrain", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and agent.poll() is None and not (out / "checkpoints" / "last.pt").exists():
            time.sleep(0.05)  # wait for the first epoch's checkpoint
        os.kill(worker_pid(agent, 1), signal.SIGTERM)  # rank 1 only: rank 0 must learn it at a step boundary
        _, err = agent.communicate(timeout=120)
    finally:
        agent.kill()
    assert agent.returncode == 0, err[-3000:]
    assert err.count("stopped by SIGTERM") == 1 and f"--resume {out}" in err  # said once, by rank 0
    state = load_checkpoint(checkpoint_path(out))
    assert 4 <= state["step"] < 50 * 4
    assert max(r["step"] for r in records(out)) <= state["step"]  # nothing logged past the checkpoint
