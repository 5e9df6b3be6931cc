"""bench/gpu_check.sh --dry-run: the GPU check's every stage runs on the CPU in seconds, so that it cannot rot."""

import json
import os
import subprocess
import sys

import cifar_pack
import pytest

from tests.conftest import REPO


def gpu_check(out, stage_dir, *args, dry=True):
    env = {**os.environ, "OUT": str(out), "STAGE_DIR": str(stage_dir), "PYTHON": sys.executable}
    env.pop("MAELAB_DATA_DIR", None)
    return subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), *(["--dry-run"] if dry else []), *args],
                          env=env, capture_output=True, text=True, timeout=1800)


def preset(out, name):
    """A throughput JSON's micro preset, checked complete."""
    saved = json.loads((out / name).read_text())
    assert saved["complete"] is True
    micro = saved["presets"]["micro"]
    assert (micro["phase"], micro["rounds_done"], micro["rounds_planned"]) == ("done", 2, 2)
    return micro


def test_the_dry_run_stages_data_and_writes_the_figures_with_their_compile_counters(tmp_path):
    src = tmp_path / "cifar-10-batches-py"
    src.mkdir()
    (src / "batches.meta").write_bytes(b"staged")
    assert cifar_pack.main(["pack", str(src), str(tmp_path / "gpu_data"), "--parts", "1"]) == 0
    part = tmp_path / "gpu_data" / "1"  # a part as bench/gpu_stage_data.sh packs it
    out, stage_dir = tmp_path / "out", tmp_path / "staged"
    done = gpu_check(out, stage_dir, "--data", str(part), "cudagraphs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (stage_dir / "cifar-10-batches-py" / "batches.meta").read_bytes() == b"staged"  # the part was unpacked
    eager, graphs, hf = preset(out, "throughput_cudagraphs.json")["rows"]
    assert (eager["name"], hf["name"]) == ("maelab pretrain", "HF ViTMAE") and eager["img_per_s"] > 0
    assert eager["first_call_s"] > 0 and len(eager["later_warmup_s"]) == 1  # the dry run's two warm-up calls
    assert graphs["name"] == "maelab pretrain, whole step compiled, CUDA graphs"
    built = graphs["compile"]
    assert built["graphs"] >= 1 and built["compile_s"]["entire_frame_compile"] > 0 and built["recompiles"] >= 0
    assert graphs["first_call_s"] > 10 * graphs["later_warmup_s"][0]  # the first call holds the trace
    assert isinstance(built["graph_breaks"], int) and "cuda_graphs_recorded" in built and "cudagraph_skips" in built
    # on the CPU no CUDA graph can run: the row is failed, its figures kept aside, not reported
    assert graphs["status"] == "failed" and "need a CUDA device" in graphs["reason"]
    assert graphs["img_per_s"] is None and graphs["unverified"]["img_per_s"] > 0
    assert eager["status"] == hf["status"] == "ok" and eager["compile"]["graphs"] == 0  # nothing built for eager
    assert "FAILED: maelab pretrain, whole step compiled, CUDA graphs" in (out / "gpu_check.log").read_text()
    assert "dry_run=1" in (out / "env.txt").read_text()
    tree = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--tree-hash"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert f"tree {tree} " in (out / "env.txt").read_text() and len(tree) == 12  # which code ran, whatever .git says


@pytest.mark.slow
def test_every_stage_runs_dry_and_can_run_again(tmp_path):
    out, stage_dir = tmp_path / "out", tmp_path / "staged"
    done = gpu_check(out, stage_dir, "throughput", "smoke", "cudagraphs", "compiled", "train", "probe", "finetune")
    assert done.returncode == 0, done.stdout + done.stderr
    [finetuned] = json.loads((out / "speedrun_finetune.json").read_text())
    assert finetuned["recipe"] == "finetune" and finetuned["smoke"] and 0 <= finetuned["top1"] <= 100
    for name in ("smoke", "speedrun_probe"):
        [record] = json.loads((out / f"{name}.json").read_text())
        assert record["recipe"] == "probe" and 0 <= record["top1"] <= 100
        assert record["best"]["name"]  # probe.layers=all: the best block is recorded beside the final layer
        assert (out / f"{name}_probe_metrics.jsonl").read_text().count('"kind": "epoch"') >= 1
    [eager, hf] = preset(out, "throughput.json")["rows"]
    assert (eager["name"], hf["name"]) == ("maelab pretrain", "HF ViTMAE") and eager["status"] == "ok"
    compiled = preset(out, "throughput_compiled.json")["rows"]
    assert [row["name"] for row in compiled][:2] == ["maelab pretrain", "maelab pretrain, whole step compiled"]
    assert all(row["img_per_s"] > 0 and row["status"] == "ok" for row in compiled) and compiled[1]["compile"]["graphs"]
    assert preset(out, "throughput_cudagraphs.json")["rows"][1]["status"] == "failed"
    train = json.loads((out / "train_smoke.json").read_text())
    assert train["ok"] and train["complete"] and [r["exit_code"] for r in train["invocations"]] == [0, 0]
    assert train["config"]["train.compile_scope"] == "step" and train["config"]["data.name"] == "synthetic"
    assert [e["epoch"] for e in train["epochs"]] == [0, 1, 2] and all(e["img_per_s"] > 0 for e in train["epochs"])
    assert len(train["mask_ratios"]) == 3 and train["mask_ratios"] == sorted(train["mask_ratios"])  # 0, 0.5, 1
    assert train["resume"]["continued"] and train["resume"]["epochs_after"] == [2]
    assert (out / "train_metrics.jsonl").read_text().count('"kind": "epoch"') == 3
    log = (out / "gpu_check.log").read_text()
    assert "a device call returns 8" in log  # these stages leave more files than a call brings back
    again = gpu_check(out, stage_dir, "probe")  # a second call on the same machine: fresh run folders
    assert again.returncode == 0, again.stdout + again.stderr
    assert log in (out / "gpu_check.log").read_text() and "exit 0" in again.stdout


def test_an_unknown_stage_is_refused_with_the_list_before_anything_runs(tmp_path):
    done = gpu_check(tmp_path / "out", tmp_path / "staged", "cudagraphs", "warp", dry=False)
    assert done.returncode == 2
    assert "unknown stage warp (throughput, smoke, cudagraphs, compiled, train, probe, finetune)" in done.stdout
    assert not (tmp_path / "out" / "env.txt").exists()  # a typo costs no device minutes
