"""The feature cache: written once per checkpoint and data, reused by probe and k-NN, invalidated by training."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from maelab.config import DataConfig, load_config
from maelab.data import load_dataset
from maelab.engine.pretrain import pretrain, resume
from maelab.eval import commands, feature_cache
from maelab.eval.commands import run_knn, run_probe
from tests.conftest import TINY

QUICK = ["probe.epochs=2", "eval.batch_size=128"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return pretrain(load_config(None, [*TINY, "optim.epochs=1", "train.tensorboard=false", f"out_dir={out}"]))


@pytest.fixture
def run_dir(trained, tmp_path):
    """A fresh copy of the trained run (no cache yet) for each test."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.fixture
def extractions(monkeypatch):
    """Every call of the encoder's feature extraction: the features it was asked for."""
    calls = []
    real = commands.extract_layers
    monkeypatch.setattr(commands, "extract_layers", lambda *a, **k: calls.append(list(a[5])) or real(*a, **k))
    return calls


def _no_encoder(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the encoder ran although the features are cached")

    monkeypatch.setattr(commands, "extract_layers", fail)


def _folders(run_dir):
    return sorted(p.name for p in (run_dir / "eval" / "cache").iterdir())


def test_probe_writes_the_cache_and_a_second_probe_and_knn_read_it(run_dir, monkeypatch):
    _, first = run_probe(run_dir, QUICK)
    folder = run_dir / "eval" / "cache" / _folders(run_dir)[0]
    assert first["feature_cache"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["key.json", "test.final.mean.pt", "train.final.mean.pt"]
    key = json.loads((folder / "key.json").read_text())
    assert key["checkpoint"]["path"].endswith("last.pt") and key["checkpoint"]["step"] == 4
    assert {"size", "mtime_ns"} <= set(key["checkpoint"]) and key["data"]["name"] == "synthetic"
    _no_encoder(monkeypatch)
    _, again = run_probe(run_dir, QUICK)
    assert (again["top1"], again["top5"]) == (first["top1"], first["top5"])
    run_knn(run_dir, ["knn.pool=mean"])  # the k-NN's features are the probe's


def test_a_cached_run_and_an_uncached_run_give_the_same_number(run_dir):
    _, cold = run_probe(run_dir, [*QUICK, "eval.feature_cache=false"])
    assert cold["feature_cache"] is None and not (run_dir / "eval" / "cache").exists()
    run_probe(run_dir, QUICK)
    _, warm = run_probe(run_dir, QUICK)
    assert (warm["top1"], warm["top5"]) == (cold["top1"], cold["top5"])


def test_only_the_missing_layers_are_extracted_in_one_pass_per_split(run_dir, extractions):
    run_probe(run_dir, QUICK)
    run_probe(run_dir, [*QUICK, "probe.layers=all"])
    missing = [("block1", "mean"), ("block2", "mean")]
    assert extractions == [[("final", "mean")]] * 2 + [missing] * 2  # train and test, each in one call


def test_training_more_invalidates_the_cache(run_dir, extractions):
    run_probe(run_dir, QUICK)
    before = _folders(run_dir)
    resume(run_dir, ["optim.epochs=2", "train.tensorboard=false"])
    _, result = run_probe(run_dir, QUICK)
    assert len(extractions) == 4  # extracted again after the resume
    after = _folders(run_dir)
    assert len(after) == 1 and after != before  # the stale folder of the same checkpoint file is gone
    assert json.loads((run_dir / "eval" / "cache" / after[0] / "key.json").read_text())["checkpoint"]["step"] == 8


def test_random_init_and_other_data_limits_have_their_own_features(run_dir, extractions):
    run_probe(run_dir, QUICK)
    run_probe(run_dir, QUICK, random_init=True)
    run_probe(run_dir, [*QUICK, "data.limit_test=20"])
    assert len(extractions) == 6 and len(_folders(run_dir)) == 3


def test_a_damaged_cache_file_is_extracted_again(run_dir, extractions):
    _, first = run_probe(run_dir, QUICK)
    damaged = run_dir / "eval" / "cache" / _folders(run_dir)[0] / "test.final.mean.pt"
    damaged.write_bytes(b"not a tensor")
    _, again = run_probe(run_dir, QUICK)
    assert extractions[-1] == [("final", "mean")] and len(extractions) == 3
    assert again["top1"] == first["top1"] and damaged.stat().st_size > 1000


def test_the_augmented_probe_bypasses_the_cache(run_dir):
    _, result = run_probe(run_dir, [*QUICK, "probe.augment=true"])
    assert result["feature_cache"] is None and not (run_dir / "eval" / "cache").exists()


def test_the_data_fingerprint_hashed_in_chunks_is_the_one_piece_digest(monkeypatch):
    data = load_dataset(DataConfig(name="synthetic", synthetic_train=10, synthetic_test=7), seed=0)
    whole = hashlib.sha256(b"".join(t.numpy().tobytes() for t in (data.x_train, data.y_train, data.x_test,
                                                                   data.y_test))).hexdigest()
    monkeypatch.setattr(feature_cache, "FINGERPRINT_CHUNK", 3)  # chunks that do not divide the splits
    assert feature_cache.data_fingerprint(data) == whole  # feature caches written before stay valid
