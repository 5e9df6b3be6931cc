"""Several processes under torchrun: the process group, which rank writes, and the collectives the engine needs.

``torchrun --standalone --nproc_per_node=N -m maelab pretrain ...`` sets RANK, WORLD_SIZE and LOCAL_RANK;
:func:`distributed` reads them, joins the process group (NCCL on CUDA, gloo on the CPU) and yields a
:class:`Dist`. Without torchrun (WORLD_SIZE unset or 1) it yields the single-process ``Dist()``, whose
helpers are the identity: one process behaves exactly as before.

Host-side agreements (the stop flag, an error on rank 0) travel over a gloo group, so that agreeing on them
never waits for the GPU. See docs/distributed.md for the batch semantics and the resume rule.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

import torch
import torch.distributed as tdist
from torch import Tensor, nn

from maelab.engine.device import resolve_device
from maelab.engine.signals import StopRequest
from maelab.errors import UserError
from maelab.shard import Shard

T = TypeVar("T")


class PeerFailed(UserError):
    """Rank 0 failed in a step only it runs (e.g. preparing the run directory); every other rank raises this
    with the same message and exit code, and stays quiet (rank 0 prints the line)."""

    quiet = True  # the CLI prints nothing for it


@dataclass
class Dist:
    """This process's place in the job; ``Dist()`` is one process on its own."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    control: Any = None  # the gloo group for host-side agreement (None: the default group)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        """This rank's rows of a global batch's random draws."""
        return Shard(self.rank, self.world_size)

    def device(self, device: torch.device) -> torch.device:
        """Under torchrun on CUDA, this rank's GPU (LOCAL_RANK), made current; otherwise ``device``."""
        if not self.enabled or device.type != "cuda":
            return device
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model in DistributedDataParallel (gradients averaged across ranks in backward), or itself."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        with warnings.catch_warnings():  # newer torch renames broadcast_buffers; the old name works from 1.x on
            warnings.simplefilter("ignore", FutureWarning)
            # buffers are constants (position embeddings): no need to broadcast them every forward
            return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)

    def mean(self, value: Tensor) -> Tensor:
        """The mean of a tensor over the ranks (a new tensor; the input when alone). No host sync on CUDA."""
        if not self.enabled:
            return value
        out = value.detach().clone()
        tdist.all_reduce(out)
        return out / self.world_size

    def mean_dict(self, values: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each 0-d tensor's mean over the ranks, in one all-reduce."""
        if not self.enabled or not values:
            return values
        stacked = self.mean(torch.stack([v.detach().double() for v in values.values()]))
        return dict(zip(values, stacked.unbind(0), strict=True))

    def average_grads(self, module: nn.Module) -> None:
        """Average ``module``'s gradients over the ranks in one all-reduce (for a module outside DDP)."""
        if not self.enabled:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        tdist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def block(self, n: int) -> tuple[int, int]:
        """This rank's contiguous block ``[lo, hi)`` of ``n`` rows (ceil(n / world_size) each, the last ones
        shorter): e.g. the images whose features it extracts."""
        per = -(-n // self.world_size)
        lo = min(self.rank * per, n)
        return lo, min(lo + per, n)

    def gather_rows(self, local: Tensor, total: int) -> Tensor:
        """Every rank's :meth:`block` of rows, gathered in order: local [hi - lo, ...] -> [total, ...] on every
        rank (one all-gather; blocks are padded to the same length for it)."""
        if not self.enabled:
            return local
        per = -(-total // self.world_size)
        padded = local.new_zeros((per, *local.shape[1:]))
        padded[:len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        tdist.all_gather(parts, padded)
        sizes = [min(per, max(total - r * per, 0)) for r in range(self.world_size)]
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])

    def agree_max(self, value: int) -> int:
        """The largest of every rank's ``value`` (host-side, over the control group)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.int64)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX, group=self.control)
        return int(t.item())

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier(group=self.control)

    def main_only(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on rank 0 only; every rank returns its result (pickled: keep it small), or raises when it
        failed, so that no rank waits for a rank that gave up."""
        if not self.enabled:
            return fn(*args, **kwargs)
        return self._on_main(fn, args, kwargs, share=True)

    def main_first(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on rank 0, then, when it succeeded, on the other ranks (e.g. a download into a shared cache)."""
        if not self.enabled:
            return fn(*args, **kwargs)
        result = self._on_main(fn, args, kwargs, share=False)
        return result if self.is_main else fn(*args, **kwargs)

    def _on_main(self, fn: Callable[..., T], args: tuple, kwargs: dict, share: bool) -> Any:
        """Run ``fn`` on rank 0 and broadcast ``("ok", result or None)`` or ``("error", message, exit_code)``."""
        if not self.is_main:
            return self._outcome(None)
        try:
            result = fn(*args, **kwargs)
        except BaseException as err:
            code = getattr(err, "exit_code", 2) if isinstance(err, UserError) else 1
            self._outcome(("error", str(err) or type(err).__name__, code))
            raise
        self._outcome(("ok", result if share else None))
        return result

    def _outcome(self, outcome: Optional[tuple]) -> Any:
        """Broadcast rank 0's outcome; the other ranks return its result or raise :class:`PeerFailed`."""
        box = [outcome]
        tdist.broadcast_object_list(box, src=0, group=self.control)
        kind, *rest = box[0]
        if kind == "ok" or self.is_main:
            return rest[0] if kind == "ok" else None
        err = PeerFailed(rest[0])
        err.exit_code = rest[1]
        raise err

    def synced(self, stop: StopRequest) -> StopRequest:
        """A stop request that all ranks agree on each time it is read (one host-side all-reduce)."""
        return SyncedStop(stop, self) if self.enabled else stop


class SyncedStop(StopRequest):
    """Reading ``requested`` agrees across ranks: if any rank received SIGTERM/SIGINT, every rank stops at the
    same step boundary. Every rank must read it at the same points (the training loop does)."""

    def __init__(self, local: StopRequest, dist: Dist) -> None:
        super().__init__()
        self.local, self.dist = local, dist

    @property
    def requested(self) -> bool:
        agreed = self.dist.agree_max(self.local.signum or 0)
        self.signum = agreed or None
        return self.signum is not None


def is_main_process() -> bool:
    """Whether this process is rank 0 (or alone), from torchrun's environment: who prints a command's summary."""
    return from_env()[0] == 0


def from_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


@contextlib.contextmanager
def distributed(device: str = "auto") -> Iterator[Dist]:
    """Join torchrun's process group for the block (NCCL for CUDA, gloo for the CPU) and leave it after.

    ``device`` is ``train.device``. Without torchrun yields ``Dist()``. Nested use (a group already joined)
    yields the same place and leaves the group to the outer block.
    """
    rank, world, local_rank = from_env()
    if world <= 1:
        yield Dist()
        return
    owner = not tdist.is_initialized()
    if owner:
        backend = "nccl" if resolve_device(device).type == "cuda" else "gloo"
        if backend == "nccl":  # "cuda" now means this rank's GPU, wherever a tensor is made
            torch.cuda.set_device(local_rank)
        tdist.init_process_group(backend)
    control = tdist.new_group(backend="gloo") if tdist.get_backend() != "gloo" else None
    try:
        yield Dist(rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local_rank, control=control)
        if owner:  # no rank leaves while another still talks to it (gloo aborts the process otherwise)
            tdist.barrier(group=control)
    finally:
        if owner:
            tdist.destroy_process_group()


def resume_step(step: int, saved_steps_per_epoch: int, saved_global_batch: int, steps_per_epoch: int,
                global_batch: int) -> int:
    """The step to resume at when the global batch (batch_size x world_size) differs from the checkpoint's.

    Maps by images seen: the checkpoint's epoch, then as many of the new global batches as fit in the images the
    epoch had already trained on (rounded down, so no image of the epoch is skipped; up to one global batch is
    trained again). An epoch boundary maps to the same epoch boundary. With an unchanged batch, ``step``.
    """
    epoch, index = divmod(step, saved_steps_per_epoch)
    if saved_steps_per_epoch == steps_per_epoch and saved_global_batch == global_batch:
        return step
    done = index * saved_global_batch
    return epoch * steps_per_epoch + min(done // global_batch, steps_per_epoch)


__all__ = ["Dist", "PeerFailed", "SyncedStop", "distributed", "from_env", "is_main_process", "resume_step"]
