"""Linear probe on frozen features: BatchNorm1d(affine=False) + Linear, SGD with momentum, cosine lr."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch
from torch import Tensor, nn

from maelab.config import ProbeConfig
from maelab.errors import DataError
from maelab.eval.knn import topk_accuracy
from maelab.schedules import lr_at


def probe_head(dim: int, num_classes: int) -> nn.Module:
    """The MAE paper's probe head: BatchNorm1d without affine parameters, then a linear layer."""
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), nn.Linear(dim, num_classes))


def train_probe(train_feats: Tensor | Callable[[int], Tensor], train_labels: Tensor, test_feats: Tensor,
                test_labels: Tensor, num_classes: int, cfg: ProbeConfig, seed: int = 0) -> dict[str, float]:
    """Train the probe head and return test top-1/top-5.

    ``train_feats`` is a tensor [N, D] (cached features) or a function epoch -> [N, D] (re-extracted
    augmented features for the Keras-style probe). Batches follow a permutation seeded by (seed, epoch); a set
    smaller than one batch is one batch per epoch. Raises DataError for fewer than 2 training images (BatchNorm's
    batch statistics need 2).
    """
    feats_at = train_feats if callable(train_feats) else (lambda epoch: train_feats)
    n, device = len(train_labels), train_labels.device
    if n < 2:
        raise DataError(f"the probe's training set holds {n} image(s): its BatchNorm needs at least 2; raise "
                        "data.limit_train")
    torch.manual_seed(seed)
    head = probe_head(test_feats.shape[1], num_classes).to(device)
    opt = torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(n // cfg.batch_size, 1)
    total = cfg.epochs * steps_per_epoch
    step = 0
    for epoch in range(cfg.epochs):
        feats = feats_at(epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).to(device)
        for i in range(steps_per_epoch):
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, 0, cfg.lr)
            loss = nn.functional.cross_entropy(head(feats[idx]), train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return evaluate_head(head, test_feats, test_labels)


@torch.no_grad()
def evaluate_head(head: nn.Module, feats: Tensor, labels: Tensor, batch: Optional[int] = 4096) -> dict[str, float]:
    """Top-1 and top-5 accuracy (in %) of ``head`` on feats [M, D] with labels [M]."""
    head.eval()
    scores = torch.cat([head(feats[i:i + batch]) for i in range(0, len(feats), batch)])
    return {"top1": 100 * topk_accuracy(scores, labels, 1), "top5": 100 * topk_accuracy(scores, labels, 5)}
