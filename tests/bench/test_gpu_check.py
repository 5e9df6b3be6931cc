"""bench/gpu_check.sh --dry-run: the GPU check's every stage runs on the CPU in seconds, so that it cannot rot."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def gpu_check(out, stage_dir, *args):
    env = {**os.environ, "OUT": str(out), "STAGE_DIR": str(stage_dir), "PYTHON": sys.executable}
    env.pop("MAELAB_DATA_DIR", None)
    return subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run", *args], env=env,
                          capture_output=True, text=True, timeout=1200)


def test_the_dry_run_stages_data_runs_every_stage_and_can_run_again(tmp_path):
    part = tmp_path / "part1"
    part.mkdir()
    (part / "batches.meta").write_bytes(b"staged")
    out, stage_dir = tmp_path / "out", tmp_path / "staged"
    done = gpu_check(out, stage_dir, "--data", str(part), "throughput", "smoke", "compiled", "probe")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (stage_dir / "cifar-10-batches-py" / "batches.meta").read_bytes() == b"staged"  # the part was unpacked
    throughput = json.loads((out / "throughput.json").read_text())
    assert throughput["presets"]["micro"]["rows"][0]["name"] == "maelab pretrain"
    assert throughput["presets"]["micro"]["rows"][0]["img_per_s"] > 0
    for name in ("smoke", "speedrun_probe"):
        [record] = json.loads((out / f"{name}.json").read_text())
        assert record["recipe"] == "probe" and 0 <= record["top1"] <= 100
        assert record["best"]["name"]  # probe.layers=all: the best block is recorded beside the final layer
        assert (out / f"{name}_probe_metrics.jsonl").read_text().count('"kind": "epoch"') >= 1
    compiled = json.loads((out / "throughput_compiled.json").read_text())["presets"]["micro"]["rows"]
    assert [row["name"] for row in compiled][:2] == ["maelab pretrain", "maelab pretrain, whole step compiled"]
    assert all(row["img_per_s"] > 0 for row in compiled)
    log = (out / "gpu_check.log").read_text()
    assert "dry_run=1" in (out / "env.txt").read_text()
    tree = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--tree-hash"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert f"tree {tree} " in (out / "env.txt").read_text() and len(tree) == 12  # which code ran, whatever .git says
    again = gpu_check(out, stage_dir, "probe")  # a second call on the same machine: fresh run folders
    assert again.returncode == 0, again.stdout + again.stderr
    assert log in (out / "gpu_check.log").read_text() and "exit 0" in again.stdout


def test_an_unknown_stage_is_refused_with_the_list(tmp_path):
    done = gpu_check(tmp_path / "out", tmp_path / "staged", "warp")
    assert done.returncode == 2
    assert "unknown stage warp (throughput, smoke, compiled, probe, finetune)" in done.stdout
