"""Seeded, class-balanced subsets: which samples ``data.limit_*``, ``recon.limit`` and the figures' images take.

:func:`subset_index` chooses the samples; :func:`balanced_subset` takes them from a tensor. A caller holding more
than the images (``Dataset.subset``: labels and file names) takes every one by the same index.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from maelab.errors import DataError


def subset_index(total: int, y: Optional[Tensor], n: int, seed: int, *, key: str = "n",
                 split: str = "dataset") -> Tensor:
    """The ``[n] int64`` CPU indices (into ``total`` samples with labels ``y: [total] int64``) of a seeded,
    class-balanced subset, in an order shuffled by ``seed``.

    Each of the C classes present gets ``n // C`` samples and the first ``n % C`` classes one more. Without labels
    (``y`` None) the ``n`` samples are a seeded random subset. ``key``/``split`` name the setting and the data in
    the ``DataError`` raised when ``n`` is not positive or too large.
    """
    if n <= 0:
        raise DataError(f"{key}={n} must be positive")
    if n > total:
        raise DataError(f"{key}={n} is larger than the {split} ({total} images): lower it")
    g = torch.Generator().manual_seed(seed)
    if y is None:
        return torch.randperm(total, generator=g)[:n]
    y_cpu = y.cpu()
    classes = torch.unique(y_cpu)
    picks = []
    for i, c in enumerate(classes.tolist()):
        members = (y_cpu == c).nonzero().squeeze(1)
        want = n // len(classes) + (1 if i < n % len(classes) else 0)
        if want > len(members):
            raise DataError(f"{key}={n} needs {want} images of class {c} but the {split} has {len(members)}: lower it")
        picks.append(members[torch.randperm(len(members), generator=g)[:want]])
    index = torch.cat(picks)
    return index[torch.randperm(len(index), generator=g)]


def balanced_subset(x: Tensor, y: Optional[Tensor], n: int, seed: int, *, key: str = "n",
                    split: str = "dataset") -> tuple[Tensor, Optional[Tensor]]:
    """``x: [N, ...]``, ``y: [N] int64`` (or None) -> ``x: [n, ...]``, ``y: [n]`` (or None): the samples
    :func:`subset_index` picks, in its order. ``DataError`` as there."""
    index = subset_index(len(x), y, n, seed, key=key, split=split)
    return x[index.to(x.device)], None if y is None else y[index.to(y.device)]
