"""CIFAR-10: the real copy reproduces ../shared/data/README.md; bad folders give one clear DataError."""

from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch

from maelab.config import DataConfig
from maelab.data.cifar10 import CLASSES, TRAIN_MEAN, TRAIN_STD, find_cifar10, load_cifar10
from maelab.data.datasets import channel_stats, load_dataset
from maelab.data.subsets import balanced_subset
from maelab.errors import DataError

ROWS = 4  # images per batch in the fake folders (conftest.FAKE_ROWS)


@pytest.fixture(scope="module")
def real(cifar_dir, tmp_path_factory):
    """The full CIFAR-10 copy (tests/conftest.py's ``cifar_dir``: $MAELAB_DATA_DIR or ../shared/data beside the
    repo; skipped when absent), found through MAELAB_DATA_DIR and loaded once for this module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAELAB_DATA_DIR", str(cifar_dir))
        cfg = DataConfig(name="cifar10", download=False, cache_dir=str(tmp_path_factory.mktemp("cache")))
        return load_dataset(cfg, seed=0)


def _sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


# --- the real data --------------------------------------------------------------------------------

def test_real_shapes_counts_and_classes(real) -> None:
    assert real.x_train.shape == (50000, 32, 32, 3) and real.x_train.dtype == torch.uint8
    assert real.x_test.shape == (10000, 32, 32, 3) and real.x_test.dtype == torch.uint8
    assert real.y_train.dtype == torch.int64 and real.y_test.dtype == torch.int64
    assert real.y_train.bincount().tolist() == [5000] * 10
    assert real.y_test.bincount().tolist() == [1000] * 10
    assert real.classes == CLASSES and real.name == "cifar10" and real.num_classes == 10


def test_real_pixel_statistics_match_readme(real) -> None:
    mean, std = channel_stats(real.x_train)
    np.testing.assert_allclose(mean, [0.49139968, 0.48215841, 0.44653091], atol=1e-6)
    np.testing.assert_allclose(std, [0.24703223, 0.24348513, 0.26158784], atol=1e-6)
    mean, std = channel_stats(real.x_test)
    np.testing.assert_allclose(mean, [0.49421428, 0.48513139, 0.45040909], atol=1e-6)
    np.testing.assert_allclose(std, [0.24665252, 0.24289226, 0.26159238], atol=1e-6)
    assert real.mean == TRAIN_MEAN and real.std == TRAIN_STD


def test_real_array_hashes_match_readme(real) -> None:
    assert _sha256(real.x_train) == "47af8b02cfcfb6cdf3dbbd1969ad7f1b70f4413f6f80f437b020ee4e5bc8304a"
    assert _sha256(real.y_train.to(torch.uint8)) == "2b7cd2f24487317614016b72ffd53071c3062f592f0eb300c18a770d41ae1253"
    assert _sha256(real.x_test) == "b726c0776fa6529b7083cf65b3fcea9ab2e4609ac1d7632ba4fb80851c88aa62"
    assert _sha256(real.y_test.to(torch.uint8)) == "a054c239a40ee7f2a5745e7e4bc11a51e9cb40c98134b602c1068e6a207487c6"


def test_real_test_set_is_grouped_by_class_so_subsets_must_be_balanced(real) -> None:
    assert (real.y_test[:1000] == 0).all()  # README: airplanes first; x_test[:N] is not a fair subset
    _, y = balanced_subset(real.x_test, real.y_test, 100, seed=0)
    assert y.bincount(minlength=10).tolist() == [10] * 10


# --- finding the folder ---------------------------------------------------------------------------

def test_search_order_is_root_then_env_then_cache(tmp_path, monkeypatch, make_fake_cifar) -> None:
    root, env, cache = (make_fake_cifar(tmp_path / d).parent for d in ("root", "env", "cache"))
    monkeypatch.setenv("MAELAB_DATA_DIR", str(env))
    cfg = DataConfig(root=str(root), cache_dir=str(cache), download=False)
    assert find_cifar10(cfg) == root / "cifar-10-batches-py"
    cfg = DataConfig(root=str(tmp_path / "elsewhere"), cache_dir=str(cache), download=False)
    assert find_cifar10(cfg) == env / "cifar-10-batches-py"
    monkeypatch.delenv("MAELAB_DATA_DIR")
    assert find_cifar10(cfg) == cache / "cifar-10-batches-py"


def test_root_may_name_the_folder_itself(tmp_path, no_data_env, make_fake_cifar) -> None:
    folder = make_fake_cifar(tmp_path)
    assert find_cifar10(DataConfig(root=str(folder), cache_dir=str(tmp_path / "c"), download=False)) == folder


def test_found_folder_is_not_written_to(tmp_path, no_data_env, make_fake_cifar) -> None:
    folder = make_fake_cifar(tmp_path / "ro")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    folder.chmod(0o555)
    try:
        found = find_cifar10(DataConfig(root=str(tmp_path / "ro"), cache_dir=str(tmp_path / "c"), download=False))
        load_cifar10(found, rows_per_batch=ROWS)
    finally:
        folder.chmod(0o755)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before
    assert not (tmp_path / "c").exists()


def test_missing_everywhere_without_download_names_the_folders(tmp_path, no_data_env) -> None:
    cfg = DataConfig(root=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"), download=False)
    with pytest.raises(DataError) as info:
        find_cifar10(cfg)
    message = str(info.value)
    assert str(tmp_path / "r") in message and str(tmp_path / "c") in message
    assert "set MAELAB_DATA_DIR or data.root" in message and "\n" not in message


# --- loading a folder -----------------------------------------------------------------------------

def test_load_converts_channel_planar_rows_to_hwc(tmp_path, make_fake_cifar) -> None:
    folder = make_fake_cifar(tmp_path)
    x_train, y_train, x_test, y_test = load_cifar10(folder, rows_per_batch=ROWS)
    assert x_train.shape == (5 * ROWS, 32, 32, 3) and x_test.shape == (ROWS, 32, 32, 3)
    raw = pickle.loads((folder / "data_batch_2").read_bytes(), encoding="latin1")["data"]
    row = raw[1]  # the second image of batch 2: 1024 red, 1024 green, 1024 blue, rows top to bottom
    img = x_train[ROWS + 1]
    assert img[0, 0].tolist() == [row[0], row[1024], row[2048]]
    assert img[2, 5].tolist() == [row[2 * 32 + 5], row[1024 + 2 * 32 + 5], row[2048 + 2 * 32 + 5]]
    assert y_train.dtype == torch.int64 and y_test.tolist() == [0, 1, 2, 3]


def test_default_count_check_refuses_a_small_folder(tmp_path, make_fake_cifar) -> None:
    folder = make_fake_cifar(tmp_path)
    with pytest.raises(DataError, match=r"data_batch_1: 'data' is uint8 \[4, 3072\], expected uint8 \[10000, 3072\]"):
        load_cifar10(folder)


def test_crafted_batch_is_refused_and_runs_nothing(tmp_path, make_fake_cifar) -> None:
    folder = make_fake_cifar(tmp_path / "copy")
    victim = tmp_path / "pwned"

    class CreatesFile:
        def __reduce__(self):
            return (open, (str(victim), "w"))

    (folder / "data_batch_1").write_bytes(pickle.dumps({"data": CreatesFile(), "labels": []}, protocol=2))
    with pytest.raises(DataError, match="refusing to unpickle .*open from .*data_batch_1"):
        load_cifar10(folder, rows_per_batch=ROWS)
    assert not victim.exists()


def test_truncated_batch_is_a_data_error(tmp_path, make_fake_cifar) -> None:
    folder = make_fake_cifar(tmp_path)
    blob = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="data_batch_3 is truncated or corrupt"):
        load_cifar10(folder, rows_per_batch=ROWS)


@pytest.mark.parametrize(
    ("entries", "pattern"),
    [
        ({"data": np.zeros((ROWS, 3000), np.uint8)}, r"'data' is uint8 \[4, 3000\]"),
        ({"data": np.zeros((ROWS, 3072), np.float32)}, r"'data' is float32"),
        ({"data": [[0] * 3072] * ROWS}, r"'data' is list"),
        ({"labels": [0, 1, 2]}, r"'labels' must be 4 integers"),
        ({"labels": [0.5, 1.0, 2.0, 3.0]}, r"'labels' must be 4 integers, got float64"),
        ({"labels": [0, 1, 2, 10]}, r"labels must be in \[0, 10\), found 0..10"),
        ({"labels": [-1, 1, 2, 3]}, r"labels must be in \[0, 10\)"),
    ],
)
def test_malformed_batch_names_the_file(tmp_path, make_fake_cifar, write_batch, entries, pattern) -> None:
    folder = make_fake_cifar(tmp_path)
    write_batch(folder / "test_batch", ROWS, 9, **entries)
    with pytest.raises(DataError, match=pattern) as info:
        load_cifar10(folder, rows_per_batch=ROWS)
    assert "test_batch" in str(info.value) and "replace it with the official file" in str(info.value)


def test_missing_batch_or_key(tmp_path, make_fake_cifar) -> None:
    folder = make_fake_cifar(tmp_path)
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataError, match="data_batch_5 is missing"):
        load_cifar10(folder, rows_per_batch=ROWS)
    (folder / "data_batch_5").write_bytes(pickle.dumps({"pixels": np.zeros(3)}, protocol=2))
    with pytest.raises(DataError, match="data_batch_5 is not a CIFAR-10 batch"):
        load_cifar10(folder, rows_per_batch=ROWS)
