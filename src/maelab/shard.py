"""A rank's rows of a global batch's random draws (torchrun): draw for the whole global batch, keep this rank's rows.

Under ``world_size`` ranks of ``B`` images each, every per-sample random draw of a step (mask noise, augmentation
parameters) is made for all ``world_size * B`` rows from the step's generator, seeded the same on every rank, and
rank ``r`` keeps rows ``[r * B, (r + 1) * B)``: the ranks together draw exactly what one process with the global
batch draws. Drawing the extra rows costs little (they are parameters and noise, not images).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world_size`` equal shards of a global batch (the default: the whole batch)."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside [0, {self.world_size})")

    def global_size(self, local: int) -> int:
        """Rows to draw for a local batch of ``local`` rows."""
        return local * self.world_size

    def rows(self, x: Tensor) -> Tensor:
        """x [world_size * B, ...] (a draw for the global batch) -> this rank's rows [B, ...]."""
        if self.world_size == 1:
            return x
        if x.shape[0] % self.world_size:
            raise ValueError(f"{x.shape[0]} rows do not split into {self.world_size} equal shards")
        b = x.shape[0] // self.world_size
        return x[self.rank * b:(self.rank + 1) * b]

    def micro(self, index: int, count: int) -> Shard:
        """Micro-batch ``index`` of ``count`` equal ones of this shard's rows (gradient accumulation): rank r's
        rows are ``count`` consecutive shards of a global batch split ``world_size x count`` ways."""
        return Shard(self.rank * count + index, self.world_size * count)


WHOLE = Shard()  # one process: the local batch is the global batch
