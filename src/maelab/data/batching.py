"""Seeded batches of indices per epoch, sharded across ranks.

The order of an epoch is a pure function of ``(seed, epoch)``: every rank computes the same
permutation and takes its own slice of each global batch, so W ranks x B images per step see
exactly the images that 1 rank x W*B would, and a resumed run sees the same batches.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maelab.errors import DataError
from maelab.seeds import torch_generator


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order of epoch ``epoch``: ``[n] int64``, a permutation of ``range(n)`` seeded by (seed, epoch)."""
    return torch.randperm(n, generator=torch_generator(seed, "batches", epoch))


def steps_per_epoch(n: int, batch_size: int, world_size: int = 1, key: str = "optim.batch_size") -> int:
    """Number of full global batches (``batch_size * world_size`` images each) in ``n`` images.

    Raises DataError when one global batch is larger than ``n``, naming the config ``key`` that set the batch size.
    """
    _check(n, batch_size, world_size, key)
    return n // (batch_size * world_size)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1, device: torch.device | str = "cpu") -> list[Tensor]:
    """This rank's batches of epoch ``epoch``: a list of ``[batch_size] int64`` index tensors on ``device``.

    Global batch ``s`` is ``perm[s*G:(s+1)*G]`` with ``G = batch_size * world_size``; rank ``r`` takes
    its slice ``[r*batch_size:(r+1)*batch_size]``. The last incomplete global batch is dropped. The permutation
    is drawn on the CPU (the same on every device) and moved in one copy per epoch, so that a step indexes
    images held on a GPU without copying its indices from the host.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside [0, {world_size})")
    steps = steps_per_epoch(n, batch_size, world_size)
    perm = epoch_permutation(n, seed, epoch)[: steps * batch_size * world_size]
    return list(perm.view(steps, world_size, batch_size)[:, rank].to(device).unbind(0))


def _check(n: int, batch_size: int, world_size: int, key: str = "optim.batch_size") -> None:
    if batch_size <= 0 or world_size <= 0:
        raise ValueError(f"batch_size={batch_size} and world_size={world_size} must be positive")
    if batch_size * world_size > n:
        size = str(batch_size) if world_size == 1 else f"{batch_size} x {world_size} ranks = {batch_size * world_size}"
        raise DataError(f"{key}={size} is larger than the training set ({n} images): "
                        "lower it or raise data.limit_train")
