from __future__ import annotations

import pytest
import torch

import maelab.data.datasets as datasets
from maelab.config import DataConfig
from maelab.data.datasets import Dataset, channel_stats, load_dataset
from maelab.data.subsets import balanced_subset
from maelab.errors import DataError


def _coded(n: int, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """x[i] holds i (so a subset can be traced back), y[i] = i % classes."""
    x = torch.arange(n).view(n, 1, 1, 1).expand(n, 2, 2, 3).contiguous()
    return x, torch.arange(n) % classes


def _fake_cifar(n_train: int = 1000, n_test: int = 200) -> Dataset:
    x_train, y_train = _coded(n_train)
    x_test, y_test = _coded(n_test)
    return Dataset(x_train, y_train, x_test, y_test, [str(c) for c in range(10)], "cifar10",
                   (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_synthetic_dataset(no_data_env) -> None:
    ds = load_dataset(DataConfig(name="synthetic", synthetic_train=300, synthetic_test=100), seed=0)
    assert ds.name == "synthetic" and ds.num_classes == 10 and ds.image_size == 32
    assert ds.x_train.shape == (300, 32, 32, 3) and ds.x_test.shape == (100, 32, 32, 3)
    assert ds.y_train.dtype == torch.int64 and ds.x_train.dtype == torch.uint8
    assert (ds.mean, ds.std) == channel_stats(ds.x_train)
    assert all(0.2 < m < 0.8 for m in ds.mean) and all(0.1 < s < 0.5 for s in ds.std)
    assert not torch.equal(ds.x_train[:100], ds.x_test)  # the test set has its own seed
    again = load_dataset(DataConfig(name="synthetic", synthetic_train=300, synthetic_test=100), seed=0)
    other = load_dataset(DataConfig(name="synthetic", synthetic_train=300, synthetic_test=100), seed=1)
    assert torch.equal(ds.x_train, again.x_train) and torch.equal(ds.x_test, again.x_test)
    assert not torch.equal(ds.x_train, other.x_train)


def test_channel_stats_are_exact() -> None:
    x = torch.randint(0, 256, (50, 8, 8, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    mean, std = channel_stats(x)
    f = x.double() / 255
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), f.mean((0, 1, 2)), atol=1e-12)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), f.std((0, 1, 2), unbiased=False), atol=1e-12)


def test_a_channel_with_no_spread_is_centred_not_divided_by_zero() -> None:
    x = torch.randint(0, 256, (4, 8, 8, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    x[..., 2] = 0  # no blue anywhere: its std is 0
    mean, std = channel_stats(x)
    assert mean[2] == 0.0 and std[2] == 1.0 and 0 < std[0] < 1
    from maelab.eval.features import prepare

    assert torch.isfinite(prepare(x, 8, mean, std)).all()  # was 0 / 0 = NaN in the blue channel


def test_to_moves_every_tensor() -> None:
    ds = _fake_cifar().to("meta")
    assert {t.device.type for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test)} == {"meta"}
    assert ds.classes == [str(c) for c in range(10)]


@pytest.mark.parametrize(("n", "expected"), [(100, [10] * 10), (25, [3] * 5 + [2] * 5), (7, [1] * 7 + [0] * 3)])
def test_balanced_subset_counts(n: int, expected: list[int]) -> None:
    x, y = _coded(1000)
    xs, ys = balanced_subset(x, y, n, seed=0)
    assert len(xs) == n and ys.bincount(minlength=10).tolist() == expected
    assert torch.equal(xs[:, 0, 0, 0] % 10, ys)  # images stay with their labels
    assert len(xs[:, 0, 0, 0].unique()) == n


def test_balanced_subset_is_seeded_and_shuffled() -> None:
    x, y = _coded(1000)
    a, _ = balanced_subset(x, y, 100, seed=0)
    b, _ = balanced_subset(x, y, 100, seed=0)
    c, _ = balanced_subset(x, y, 100, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    ids = a[:, 0, 0, 0]
    assert not torch.equal(ids, ids.sort().values)
    assert not torch.equal(ids[:10] % 10, torch.zeros(10, dtype=torch.int64))


def test_balanced_subset_too_large_or_impossible() -> None:
    x, y = _coded(50)
    with pytest.raises(DataError) as info:
        balanced_subset(x, y, 60, seed=0, key="data.limit_train", split="training set")
    assert str(info.value) == "data.limit_train=60 is larger than the training set (50 images): lower it"
    y = torch.cat([torch.zeros(45, dtype=torch.int64), torch.ones(5, dtype=torch.int64)])
    with pytest.raises(DataError, match="needs 20 images of class 1 but the dataset has 5"):
        balanced_subset(x, y, 40, seed=0)


def test_limits_applied_in_load_dataset(monkeypatch) -> None:
    monkeypatch.setattr(datasets, "_load_cifar10", lambda cfg: _fake_cifar())
    cfg = DataConfig(name="cifar10", limit_train=100, limit_test=50)
    ds0, ds1 = load_dataset(cfg, seed=0), load_dataset(cfg, seed=1)
    assert len(ds0.x_train) == 100 and ds0.y_train.bincount().tolist() == [10] * 10
    assert len(ds0.x_test) == 50 and ds0.y_test.bincount().tolist() == [5] * 10
    assert not torch.equal(ds0.x_train, ds1.x_train)  # the training subset follows the run's seed
    assert torch.equal(ds0.x_test, ds1.x_test)  # the test subset is the same for every seed


def test_limit_larger_than_the_training_set(monkeypatch) -> None:
    monkeypatch.setattr(datasets, "_load_cifar10", lambda cfg: _fake_cifar(n_train=50000))
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name="cifar10", limit_train=60000), seed=0)
    assert str(info.value) == "data.limit_train=60000 is larger than the training set (50000 images): lower it"


def test_empty_dataset_is_an_error(monkeypatch) -> None:
    monkeypatch.setattr(datasets, "_load_cifar10", lambda cfg: _fake_cifar(n_test=0))
    with pytest.raises(DataError, match="the cifar10 test set is empty"):
        load_dataset(DataConfig(name="cifar10"), seed=0)
