"""The probe heads: independent of each other, and trained by the optimizer probe.optimizer names."""

import pytest
import torch

from maelab.config import ProbeConfig
from maelab.eval.linear_probe import train_probe, train_probes


def _features(n: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n points [n, dim] whose first coordinates carry their label (5 classes) plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 5, (n,), generator=g)
    feats = torch.randn(n, dim, generator=g)
    feats[:, :5] += 1.5 * torch.nn.functional.one_hot(labels, 5)
    return feats, labels


def test_heads_trained_together_are_each_what_one_head_alone_gives():
    (xa, y), (xt, yt) = _features(300, 12, 0), _features(400, 12, 1)
    cfg = ProbeConfig(epochs=3, batch_size=32, lr=0.05)
    wide = torch.cat([xa, xa.flip(1)], dim=1), torch.cat([xt, xt.flip(1)], dim=1)
    together = train_probes({"a": xa, "wide": wide[0]}, y, {"a": xt, "wide": wide[1]}, yt, 5, cfg, seed=3)
    assert together["a"] == train_probe(xa, y, xt, yt, 5, cfg, seed=3)
    assert together["wide"] == train_probe(wide[0], y, wide[1], yt, 5, cfg, seed=3)
    assert together["a"]["top1"] > 40  # the heads learned (chance: 20%)


@pytest.mark.parametrize("optimizer,used,refused", [("adamw", "AdamW", "SGD"), ("sgd", "SGD", "AdamW")])
def test_the_optimizer_named_is_the_one_that_steps(monkeypatch, optimizer, used, refused):
    steps = []
    real = getattr(torch.optim, used)

    class Counting(real):
        def step(self, *args, **kwargs):
            steps.append(self.defaults["lr"])
            return super().step(*args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError(f"probe.optimizer={optimizer} built {refused}")

    monkeypatch.setattr(torch.optim, used, Counting)
    monkeypatch.setattr(torch.optim, refused, refuse)
    (x, y), (xt, yt) = _features(128, 8, 0), _features(64, 8, 1)
    train_probe(x, y, xt, yt, 5, ProbeConfig(optimizer=optimizer, epochs=2, batch_size=32, lr=1e-3), seed=0)
    assert len(steps) == 2 * 4 and steps[0] == 1e-3
