"""Every seed maelab derives, from one function of (seed, stream, index): the run's ``train.seed``, the name of
what draws (augmentation, masks, the batch order, the probe's order...) and where (step, epoch, rank).

Streams never collide and a new stream never shifts the draws of another: a variant that draws more augmentation
numbers masks the same patches (common random numbers across an ablation's variants), and every rank and every
resumed run re-derives the same seeds. The hash is BLAKE2b (hashlib), 63 bits.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def derive_seed(seed: int, stream: str, *index: int) -> int:
    """A seed in [0, 2**63) that is a pure function of (``seed``, ``stream``, ``index``...)."""
    key = ":".join([str(seed), stream, *map(str, index)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)


def torch_generator(seed: int, stream: str, *index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded by :func:`derive_seed`."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, stream, *index))


def numpy_rng(seed: int, stream: str, *index: int) -> np.random.Generator:
    """A numpy generator seeded by :func:`derive_seed`."""
    return np.random.default_rng(derive_seed(seed, stream, *index))
