from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maelab.data.synthetic import CLASSES, make_synthetic


def test_shapes_dtypes_and_balanced_labels() -> None:
    x, y = make_synthetic(205, seed=3)
    assert x.shape == (205, 32, 32, 3) and x.dtype == torch.uint8 and x.is_contiguous()
    assert y.shape == (205,) and y.dtype == torch.int64
    counts = y.bincount(minlength=10)
    assert counts.sum() == 205 and counts.max() - counts.min() <= 1 and len(CLASSES) == 10
    assert not torch.equal(y[:20], torch.arange(20) % 10)  # shuffled, not cyclic


def test_other_sizes() -> None:
    x, _ = make_synthetic(10, seed=0, size=48)
    assert x.shape == (10, 48, 48, 3)


def test_deterministic_in_seed() -> None:
    x1, y1 = make_synthetic(64, seed=7)
    x2, y2 = make_synthetic(64, seed=7)
    x3, y3 = make_synthetic(64, seed=8)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3) and not torch.equal(y1, y3)


def test_images_use_the_full_range_and_differ() -> None:
    x, _ = make_synthetic(100, seed=0)
    assert x.min() == 0 or x.max() == 255
    flat = x.view(100, -1).float()
    assert torch.cdist(flat, flat).add(torch.eye(100) * 1e9).min() > 0  # no two images alike


def _features(x: torch.Tensor) -> torch.Tensor:
    """[N, 32, 32, 3] uint8 -> [N, 768]: 16x16 pixels, standardized per image."""
    f = F.avg_pool2d(x.permute(0, 3, 1, 2).float() / 255, 2).flatten(1)
    return (f - f.mean(1, keepdim=True)) / (f.std(1, keepdim=True) + 1e-3)


def test_learnable_by_a_small_mlp() -> None:
    torch.manual_seed(0)
    (x_train, y_train), (x_test, y_test) = make_synthetic(4000, seed=0), make_synthetic(1000, seed=1)
    a, b = _features(x_train), _features(x_test)
    model = nn.Sequential(nn.Linear(a.shape[1], 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(0, len(a), (128,), generator=g)
        loss = F.cross_entropy(model(a[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = (model(b).argmax(1) == y_test).float().mean().item()
    assert accuracy > 0.5, f"test accuracy {accuracy:.3f} (chance 0.1)"


@pytest.mark.parametrize("n", [0, 1, 9])
def test_tiny_sets(n: int) -> None:
    x, y = make_synthetic(n, seed=0)
    assert x.shape == (n, 32, 32, 3) and y.shape == (n,)
