"""Linear probe on frozen features: BatchNorm1d(affine=False) + Linear, SGD with momentum or AdamW, cosine lr."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Optional

import torch
from torch import Tensor, nn

from maelab.config import ProbeConfig
from maelab.errors import DataError
from maelab.eval.metrics import accuracies
from maelab.progress import phase
from maelab.schedules import LRSchedule
from maelab.seeds import torch_generator

Features = dict[str, Tensor]  # a head's name -> its features [N, D_head]


def probe_head(dim: int, num_classes: int) -> nn.Module:
    """The MAE paper's probe head: BatchNorm1d without affine parameters, then a linear layer."""
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), nn.Linear(dim, num_classes))


def probe_optimizer(params: Iterable[nn.Parameter], cfg: ProbeConfig) -> torch.optim.Optimizer:
    """``probe.optimizer``: SGD with momentum 0.9 (the Keras probe), or AdamW (torch's decoupled weight decay,
    betas 0.9/0.999); ``probe.lr`` is the peak of the cosine schedule, ``probe.weight_decay`` applies to the
    linear layer's weight and bias (the BatchNorm has no parameters)."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def train_probe(train_feats: Tensor | Callable[[int], Tensor], train_labels: Tensor, test_feats: Tensor,
                test_labels: Tensor, num_classes: int, cfg: ProbeConfig, seed: int = 0) -> dict[str, float]:
    """Train one probe head and return its test top-1/top-5 (%): :func:`train_probes` with one head.

    ``train_feats`` is a tensor [N, D] or a function epoch -> [N, D] (re-extracted augmented features).
    """
    feats_at = (lambda epoch: {"head": train_feats(epoch)}) if callable(train_feats) else {"head": train_feats}
    return train_probes(feats_at, train_labels, {"head": test_feats}, test_labels, num_classes, cfg, seed)["head"]


def train_probes(train_feats: Features | Callable[[int], Features], train_labels: Tensor, test_feats: Features,
                 test_labels: Tensor, num_classes: int, cfg: ProbeConfig, seed: int = 0,
                 progress: bool = False) -> dict[str, dict[str, Any]]:
    """Train one independent head per entry of ``test_feats`` and return each head's test top-1/top-5 (%; top-5
    null with its reason under "undefined" on 5 classes or fewer).

    ``train_feats`` maps the same names to [N, D_head] (cached features), or is a function epoch -> that map
    (augmented features re-extracted every epoch, the Keras-style probe). Every head is built right after
    ``torch.manual_seed(seed)`` and has its own optimizer; batches follow a permutation seeded by (seed, epoch),
    the same for every head; a set smaller than one batch is one batch per epoch. So each head is exactly what a
    run probing it alone gives. The last epoch's head is evaluated (no selection on the test set). Raises
    DataError for fewer than 2 training images (BatchNorm's batch statistics need 2). ``progress``: show the
    epochs once they take a while (:func:`maelab.progress.phase`: a cached-feature probe of a small set is silent,
    the augmented probe re-extracting 50,000 images an epoch is not).
    """
    feats_at = train_feats if callable(train_feats) else (lambda epoch: train_feats)
    n, device = len(train_labels), train_labels.device
    if n < 2:
        raise DataError(f"the probe's training set holds {n} image(s): its BatchNorm needs at least 2; raise "
                        "data.limit_train")
    heads = {}
    for name, feats in test_feats.items():
        torch.manual_seed(seed)
        heads[name] = probe_head(feats.shape[1], num_classes).to(device)
    opts = {name: probe_optimizer(head.parameters(), cfg) for name, head in heads.items()}
    steps_per_epoch = max(n // cfg.batch_size, 1)
    schedule = LRSchedule.for_probe(cfg, steps_per_epoch)
    with phase(cfg.epochs, "probe", "epoch", enabled=progress) as bar:
        for epoch in range(cfg.epochs):
            feats = feats_at(epoch)
            order = torch.randperm(n, generator=torch_generator(seed, "probe-order", epoch)).to(device)
            for name, head in heads.items():
                _train_epoch(head, opts[name], feats[name], train_labels, order, epoch * steps_per_epoch,
                             steps_per_epoch, cfg, schedule)
            bar.update()
    return {name: evaluate_head(head, test_feats[name], test_labels) for name, head in heads.items()}


def _train_epoch(head: nn.Module, opt: torch.optim.Optimizer, feats: Tensor, labels: Tensor, order: Tensor,
                 step: int, steps: int, cfg: ProbeConfig, schedule: LRSchedule) -> None:
    """``steps`` batches of ``order`` (a permutation of the N rows of feats [N, D] and labels [N]), from global
    step ``step``; the lr follows ``schedule`` (:meth:`LRSchedule.for_probe`: cosine from ``cfg.lr`` to 0, no
    warm-up)."""
    head.train()
    for i in range(steps):
        idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        for group in opt.param_groups:
            group["lr"] = schedule(step + i)
        loss = nn.functional.cross_entropy(head(feats[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@torch.no_grad()
def evaluate_head(head: nn.Module, feats: Tensor, labels: Tensor, batch: Optional[int] = 4096) -> dict[str, Any]:
    """Top-1 and top-5 accuracy (in %) of ``head`` on feats [M, D] with labels [M]; top-5 is null with its reason
    on 5 classes or fewer (:func:`maelab.eval.metrics.accuracies`)."""
    head.eval()
    scores = torch.cat([head(feats[i:i + batch]) for i in range(0, len(feats), batch)])
    return accuracies(scores, labels)
