"""Non-finite steps (``train.on_nan``): the guarded optimizer step and the bookkeeping of bad steps.

``stop`` (the default) steps as usual; the loop keeps each step's loss, and whether its gradients were finite, on
the device and, at its next host sync (every step on CPU, every ``train.log_every`` steps and at the epoch's end on
CUDA), raises at the first step whose loss or gradients were NaN or infinite (an infinite gradient under a finite
loss turns the weights into NaN, through clipping or Adam's moments), naming it as metrics.jsonl numbers steps
(from 1), before the epoch's checkpoint is written. Weights that are not finite are never written to a checkpoint
(:func:`check_weights`, before each one). The error names the checkpoint that is kept, or says that there is none
(:meth:`NonFiniteLossError.kept_in`).

``skip`` leaves a step whose loss or gradients are non-finite without any effect: no weight, no Adam moment
and no optimizer step count changes. With a fused optimizer (the engine's choice on CUDA and the CPU) the skip is
decided on the device through the fused kernels' ``found_inf`` input, the mechanism GradScaler uses, so there is no
host sync per step; a non-fused optimizer is checked on the host. Under fp16 the GradScaler does the skipping: a
non-finite loss poisons the gradients so that the scaler sees an overflow (and halves its scale, as it does for
any overflow). The update paths are :mod:`maelab.update_paths`'. Skipped steps are counted (``skipped_steps`` in
metrics.jsonl, per logged step and per epoch); more than ``train.max_skipped_steps`` in a row stop the run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from maelab.errors import UserError
from maelab.run_layout import RunLayout

RETRY_HINT = "lower optim.lr / optim.base_lr or set optim.grad_clip=1.0, then start again"


class NonFiniteLossError(UserError):
    """The loss, the gradients or the weights became NaN or infinite and the run stopped (exit code 1).

    ``problem`` says what and at which step; the message adds what is kept once :meth:`kept_in` knows the run
    directory (the training loop re-raises it so), and the advice."""

    exit_code = 1

    def __init__(self, problem: str, kept: str = "") -> None:
        self.problem = problem
        super().__init__(f"{problem}: the run stopped{f'; {kept}' if kept else ''}; {RETRY_HINT}")

    def kept_in(self, run_dir: Path) -> NonFiniteLossError:
        """The same error, saying which checkpoint of ``run_dir`` is kept (read from the file: its step and whether
        its weights are finite), or that none exists."""
        return NonFiniteLossError(self.problem, kept_checkpoint(Path(run_dir)))


def kept_checkpoint(run_dir: Path) -> str:
    """What a stopped run leaves to resume from, in words: its last.pt and the step it was written after, or
    that there is none."""
    path = RunLayout(run_dir).checkpoint
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        step, bad = int(state["step"]), non_finite_tensors(state["model"])
    except FileNotFoundError:
        return "it had written no checkpoint yet, so none is kept"
    except Exception as err:  # noqa: BLE001 - any damage: say so rather than vouch for the file
        return f"its checkpoint {path} cannot be read ({type(err).__name__}): there is no good checkpoint to resume"
    if bad:
        return (f"its checkpoint {path} (step {step}) holds non-finite weights ({_names(bad)}): do not resume from "
                "it")
    return f"its last good checkpoint, {path} (step {step}, finite weights), is kept"


class NanPolicy:
    """What ``train.on_nan`` does with bad steps. stop: the losses are checked where the loop reads them (at its host
    syncs, :meth:`check`), and so is the first step whose gradients were non-finite (kept on the device); skip: the
    skipped steps are counted on the device (no host sync until :meth:`check`). Steps are numbered from 0 here, as
    ``run.step`` before the step; messages number them as metrics.jsonl does (from 1)."""

    def __init__(self, on_nan: str, max_skipped: int, device: torch.device) -> None:
        self.skip = on_nan == "skip"
        self.max_skipped = max_skipped
        zero = torch.zeros((), device=device, dtype=torch.int64)
        self.since_log, self.in_epoch = zero.clone(), zero.clone()  # skip: skipped steps
        self.streak, self.longest, self.longest_end = zero.clone(), zero.clone(), zero.clone()
        self.first_bad_grads = zero - 1  # stop: the first step whose gradients were non-finite (-1: none)
        self._watched: Optional[Tensor] = None  # stop: this step's flag, until add() knows its number

    def guard(self, loss: Tensor) -> Optional[Tensor]:
        """The ``guard`` of :func:`maelab.update_paths.optimizer_step`: the loss under skip, None under stop."""
        return loss if self.skip else None

    def watch(self, grads_bad: Optional[Tensor]) -> None:
        """stop: whether this step's gradients were non-finite (0-d bool; None: not known), for :meth:`add`."""
        self._watched = grads_bad

    def add(self, loss: Tensor, skipped: Optional[Tensor], step: int) -> None:
        """Record step ``step``: whether the update skipped it (skip; None under stop, where the loss
        itself is checked when read, :meth:`check`, and the gradients' flag given to :meth:`watch` is kept)."""
        if skipped is None:
            watched, self._watched = self._watched, None
            if watched is not None:
                first = self.first_bad_grads
                self.first_bad_grads = torch.where(watched & (first < 0), torch.full_like(first, step), first)
            return
        count = skipped.long()
        self.since_log += count
        self.in_epoch += count
        self.streak = (self.streak + 1) * count  # back to 0 at a step that was not skipped
        longer = self.streak > self.longest
        self.longest = torch.where(longer, self.streak, self.longest)
        self.longest_end = torch.where(longer, torch.full_like(self.longest_end, step), self.longest_end)

    def flags(self) -> list[Tensor]:
        """The device values :meth:`check` reads, to be read with the losses in one transfer (``EpochStats.read``):
        stop: the first step whose gradients were non-finite; skip: the longest run of skipped steps and its end."""
        return [self.first_bad_grads] if not self.skip else [self.longest, self.longest_end]

    def check(self, losses: Sequence[float], first_step: int, flags: Sequence[float]) -> None:
        """Raise NonFiniteLossError if the run must stop. stop: at the first non-finite value of ``losses`` (the
        losses of steps ``first_step``, ``first_step + 1``...) or an earlier step whose gradients were non-finite;
        skip: at too many skipped steps in a row. ``flags``: the values of :meth:`flags`, read in the same host
        transfer as the losses (EpochStats.read), so that the check adds no sync of its own."""
        values = [int(v) for v in flags]
        if not self.skip:
            bad = next((first_step + i for i, value in enumerate(losses) if not math.isfinite(value)), None)
            grads = values[0]
            if grads >= 0 and (bad is None or grads < bad):
                raise NonFiniteLossError(f"the gradients became non-finite at step {grads + 1} (its loss was finite)")
            if bad is not None:
                raise NonFiniteLossError(f"the loss became non-finite at step {bad + 1}")
            return
        longest, end = values
        if longest > self.max_skipped:
            raise NonFiniteLossError(
                f"{longest} steps in a row (steps {end - longest + 2} to {end + 1}) had a non-finite loss or gradients "
                f"and were skipped, more than train.max_skipped_steps={self.max_skipped}"
            )

    def check_weights(self, run: Any) -> None:
        """Raise before a checkpoint when a weight of ``run`` (its MAE, and each add-on's tensors: the GAN's
        discriminator) is NaN or infinite: such weights are never written (one host sync)."""
        named = {f"model.{k}": v for k, v in run.model.state_dict().items()}
        for addon in run.addons:
            named.update({f"{addon.name}.{k}": v for k, v in addon.named_tensors().items()})
        bad = non_finite_tensors(named)
        if bad:
            raise NonFiniteLossError(f"the weights became non-finite by step {run.step} ({_names(bad)}); they were "
                                     "not written to a checkpoint")

    def log_fields(self) -> dict[str, int]:
        """Host sync (skip only): the steps skipped since the last call, for a step record."""
        return self._take("since_log")

    def epoch_fields(self) -> dict[str, int]:
        """Host sync (skip only): the steps skipped since the last call, for an epoch record."""
        return self._take("in_epoch")

    def _take(self, name: str) -> dict[str, int]:
        if not self.skip:
            return {}
        counter = getattr(self, name)
        value = int(counter.item())
        counter.zero_()
        return {"skipped_steps": value}


def non_finite_tensors(named: dict[str, Any]) -> list[str]:
    """The names of the floating-point tensors of ``named`` (a state dict) holding a NaN or an infinity, in order
    (one host sync)."""
    floats = {k: v for k, v in named.items() if isinstance(v, Tensor) and v.is_floating_point() and v.numel()}
    if not floats:
        return []
    finite = torch.stack([torch.isfinite(v).all().to(floats[next(iter(floats))].device) for v in floats.values()])
    return [k for k, ok in zip(floats, finite.tolist(), strict=True) if not ok]


def _names(bad: list[str], shown: int = 3) -> str:
    """'a, b, c and 4 more tensors' for an error line."""
    more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
    return f"{len(bad)} tensor{'s' if len(bad) > 1 else ''}: {', '.join(bad[:shown])}{more}"
