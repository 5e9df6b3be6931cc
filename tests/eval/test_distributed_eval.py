"""Fine-tuning and the linear probe under torchrun (2 gloo processes) give what one process gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maelab.config import load_config
from maelab.engine.pretrain import pretrain
from tests.conftest import REPO, TINY
from tests.eval import ddp_eval_script

SCRIPT = Path(ddp_eval_script.__file__)


def test_finetune_and_probe_on_two_ranks_match_one_rank_with_the_global_batch(tmp_path):
    run_dir = pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false",
                                          f"out_dir={tmp_path / 'run'}"]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "OMP_NUM_THREADS": "1"}
    two = tmp_path / "two.json"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(SCRIPT), str(run_dir), str(two), "32"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(two.read_text())
    want = ddp_eval_script.main(str(run_dir), str(tmp_path / "one.json"), 64)
    assert got["world_size"] == 2 and want["world_size"] == 1
    assert len(got["finetune_losses"]) == 2
    assert got["finetune_losses"] == pytest.approx(want["finetune_losses"], rel=1e-4)  # DDP = the global batch
    assert got["finetune_top1"] == want["finetune_top1"]
    assert got["probe"] == want["probe"] and got["probe_top5"] == want["probe_top5"]  # sharded features, gathered
