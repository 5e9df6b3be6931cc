"""A tiny suite on the synthetic set: 2 variants × 2 seeds, a few seconds per run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

BASE = {
    "data": {"name": "synthetic", "synthetic_train": 192, "synthetic_test": 64},
    "model": {"preset": "micro"},
    "optim": {"batch_size": 64, "lr": 2.0e-3, "warmup_fraction": 0.1, "epochs": 2},
    "train": {"log_every": 1, "tensorboard": False},
    "probe": {"epochs": 5}, "recon": {"limit": 32},
}
SUITE = {
    "name": "tiny",
    "description": "two variants on the synthetic set",
    "report_claims": True,  # its claims quote the report's figures (tests/ablate/test_own_suite.py: one's own)
    "base": "base.yaml",
    "seeds": 2,
    "baseline": "baseline",
    "variants": {"baseline": {}, "linear": {"overrides": ["mask.schedule=linear", "mask.min=0.0", "mask.max=1.0"]}},
    "claims": [{"text": "a schedule helps", "variant": "linear", "metric": "probe_top1", "kind": "better",
                "claimed": 46.52, "claimed_reference": 40.98},
               {"text": "k-NN unchanged", "variant": "linear", "metric": "knn_top1", "kind": "same", "margin": 50.0}],
}


def write_suite(folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump({**SUITE, **changes}))
    return path


@pytest.fixture
def suite_copy(finished_suite, tmp_path) -> tuple[Path, Path]:
    path, out = finished_suite
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return path, copy
