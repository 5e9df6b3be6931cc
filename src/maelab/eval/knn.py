"""Weighted k-nearest-neighbour classification on features (InstDisc / DINO protocol)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from maelab.config import KnnConfig
from maelab.data import Dataset
from maelab.eval.features import extract_features
from maelab.models.vit import ViTEncoder


@torch.no_grad()
def knn_predict(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, num_classes: int, k: int = 20,
                temperature: float = 0.07, chunk: int = 1000) -> Tensor:
    """Class scores of each test sample: [M, C].

    Features are L2-normalised; the k most cosine-similar training samples vote for their class with
    weight exp(similarity / temperature) (InstDisc, DINO's ``knn_classifier``), computed as
    exp((similarity - the row's top similarity) / temperature): the same votes times one factor per row, so
    the same ranking, without the float32 overflow to inf (ties of inf votes) once 1 / temperature > 88.
    train_feats [N, D], train_labels [N] int64, test_feats [M, D] -> float32 [M, C], each row's largest vote <= k.
    """
    train = F.normalize(train_feats.float(), dim=1)
    test = F.normalize(test_feats.float(), dim=1)
    k = min(k, len(train))
    scores = []
    for start in range(0, len(test), chunk):
        sim = test[start:start + chunk] @ train.T  # [m, N]
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = ((top_sim - top_sim[:, :1]) / temperature).exp()  # topk sorts: column 0 is the max
        votes = torch.zeros(len(sim), num_classes, device=sim.device)
        votes.scatter_add_(1, train_labels[top_idx], weights)
        scores.append(votes)
    return torch.cat(scores)


def topk_accuracy(scores: Tensor, labels: Tensor, k: int = 1) -> float:
    """Fraction of rows whose true label is among the k highest scores. scores [M, C], labels [M].

    Undefined for no rows (0 / 0): a ValueError (the datasets refuse an empty test set before this)."""
    if len(labels) == 0:
        raise ValueError("accuracy over no samples is undefined (0 / 0): the test set is empty")
    k = min(k, scores.shape[1])
    hits = (scores.topk(k, dim=1).indices == labels.unsqueeze(1)).any(dim=1)
    return float(hits.float().mean())


def knn_top1(train_feats: Tensor, test_feats: Tensor, data: Dataset, cfg: KnnConfig) -> float:
    """k-NN top-1 (%) with ``cfg``: features of data's training images [N, D] as the bank, of its test images
    [M, D] as queries."""
    scores = knn_predict(train_feats, data.y_train, test_feats, data.num_classes, cfg.k, cfg.temperature)
    return 100 * topk_accuracy(scores, data.y_test, 1)


def encoder_knn_top1(encoder: ViTEncoder, data: Dataset, img_size: int, cfg: KnnConfig, batch_size: int = 500) -> float:
    """k-NN top-1 (%) of a frozen encoder: the training images as the bank, the test images as queries; NaN when a
    feature is not finite (undefined: the k-NN monitor's metrics record then holds null with the reason)."""
    train, test = (extract_features(encoder, x, img_size, data.mean, data.std, cfg.pool, batch_size)
                   for x in (data.x_train, data.x_test))
    if not (torch.isfinite(train).all() and torch.isfinite(test).all()):
        return float("nan")
    return knn_top1(train, test, data, cfg)
