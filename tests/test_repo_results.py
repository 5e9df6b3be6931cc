"""A suite folder merged under docs/results/ is committed for its results (any machine resumes from them, any
reader recomputes every interval), never for its checkpoints, TensorBoard logs, feature caches or claims."""

import shutil
import subprocess

import pytest

from tests.conftest import REPO

KEPT = ["results.csv", "report.md", "suite.yaml", "environment.json", "runs/gan/seed0/ablate.json",
        "runs/gan/seed0/config.yaml", "runs/gan/seed0/metrics.jsonl", "runs/gan/seed0/eval/probe.json",
        "runs/gan/seed0/eval/knn_random_init.json"]
LEFT_OUT = ["runs/gan/seed0/checkpoints/last.pt", "runs/gan/seed0/checkpoints/epoch_0010.pt",
            "runs/gan/seed0/tensorboard/events.out.tfevents.1", "runs/gan/seed0/eval/cache/key.json",
            "runs/gan/seed0/.claim", "runs/gan/seed0/export/model.safetensors", "windows/w1/compile_cache.bin"]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs git and the repo")
def test_a_suite_folder_under_docs_results_keeps_its_results_and_leaves_out_the_heavy_parts():
    paths = [f"docs/results/seed_cifar10_gpu/{p}" for p in KEPT + LEFT_OUT]
    done = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True)
    ignored = set(done.stdout.split())
    assert ignored == {f"docs/results/seed_cifar10_gpu/{p}" for p in LEFT_OUT}
