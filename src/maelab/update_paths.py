"""The optimizer update paths, one function each, all called as ``update(optimizer, scaler, params, grad_clip, bad)``:
below the engine (whose :class:`~maelab.engine.update.Updater` picks one for the MAE) and its add-ons (the
discriminator's step, ``gan/``), which both step optimizers through them.

``params`` are the parameters holding gradients; ``bad`` is None for an unguarded step (``train.on_nan=stop``), else
a 0-d bool device tensor, True when the step must be skipped (its loss is non-finite, or the caller says so); a
guarded path adds non-finite gradients to it and returns it (whether the step was skipped). The paths:

- :func:`plain_update` (stop, no scaler, unwatched: the compiled step, the discriminator's step): clip and step;
- :func:`watched_update` (stop, no scaler: the MAE's eager step): the same, and returns whether the gradients'
  norm was non-finite, for ``train.on_nan=stop`` (:class:`~maelab.engine.numerics.NanPolicy`);
- :func:`scaler_update` (fp16, either policy): the GradScaler skips an overflow; under skip a bad loss poisons the
  gradients so that it sees one;
- :func:`fused_skip_update` (skip, a fused optimizer: the engine's, on CUDA and the CPU): skipped on the device,
  through the fused kernel's ``found_inf``;
- :func:`host_skip_update` (skip, a non-fused optimizer): skipped after a host check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Optional

import torch
from torch import Tensor

Update = Callable[[torch.optim.Optimizer, Optional[torch.amp.GradScaler], list[Tensor], Optional[float],
                   Optional[Tensor]], Optional[Tensor]]


def select_update(optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler], guarded: bool,
                  watch: bool = False) -> Update:
    """The update path for ``optimizer`` and ``scaler``: ``guarded`` under ``train.on_nan=skip``; ``watch``: an
    unguarded step reports whether its gradients were non-finite (``stop``; a GradScaler skips those itself)."""
    if scaler is not None:
        return scaler_update
    if not guarded:
        return watched_update if watch else plain_update
    return fused_skip_update if optimizer.defaults.get("fused") else host_skip_update


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler],
                   params: Iterable[Tensor], grad_clip: Optional[float], guard: Optional[Tensor] = None,
                   skip: Optional[Tensor] = None, watch: bool = False) -> Optional[Tensor]:
    """After backward: unscale (fp16), clip to ``grad_clip`` and step ``optimizer`` over ``params``, by the path
    :func:`select_update` picks (for a caller without the engine's ``Updater``: the discriminator's step).

    ``guard`` is the step's loss (0-d) under ``train.on_nan=skip``, None under ``stop``. When given, the step
    is skipped if the loss or the gradients are non-finite, or if ``skip`` (0-d bool) is True; the returned
    0-d bool device tensor says whether it was. Unguarded, the step is taken; with ``watch`` (``stop``) the
    returned 0-d bool says whether the gradients' norm was non-finite (always False under a GradScaler, which
    skips an overflow itself); else None.
    """
    update = select_update(optimizer, scaler, guarded=guard is not None, watch=watch)
    return update(optimizer, scaler, with_grads(params), grad_clip, bad_step(guard, skip))


def bad_step(guard: Optional[Tensor], skip: Optional[Tensor] = None) -> Optional[Tensor]:
    """``bad`` for a guarded path: whether the loss ``guard`` (0-d) is non-finite, or ``skip`` (0-d bool) is True;
    None when unguarded (``guard`` None)."""
    if guard is None:
        return None
    bad = ~torch.isfinite(guard.detach())
    return bad if skip is None else bad | skip


def with_grads(params: Iterable[Tensor]) -> list[Tensor]:
    return [p for p in params if p.grad is not None]


def plain_update(optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler], params: list[Tensor],
                 grad_clip: Optional[float], bad: Optional[Tensor] = None) -> None:
    """Clip to ``grad_clip`` and step: nothing checked (no scaler, unguarded)."""
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


def watched_update(optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler], params: list[Tensor],
                   grad_clip: Optional[float], bad: Optional[Tensor] = None) -> Optional[Tensor]:
    """:func:`plain_update`, returning whether the gradients' norm was non-finite (the norm clipping computes
    anyway, else one foreach norm; no host sync): an infinite gradient under a finite loss turns the weights into
    NaN, which ``train.on_nan=stop`` must catch. None when no parameter has a gradient."""
    if not params:
        return plain_update(optimizer, scaler, params, grad_clip)
    if grad_clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm([p.grad for p in params])))
    optimizer.step()
    return ~torch.isfinite(norm)


def scaler_update(optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler], params: list[Tensor],
                  grad_clip: Optional[float], bad: Optional[Tensor] = None) -> Optional[Tensor]:
    """fp16: unscale, clip, step through the GradScaler, which checks the gradients and skips an overflow on its
    own (halving its scale). Guarded, it only needs to see ``bad``: a bad step's gradients are multiplied by NaN
    (1 otherwise), so that the scaler sees an overflow. Returns ``bad``."""
    if bad is not None:
        poison = torch.where(bad, torch.full_like(bad, float("nan"), dtype=torch.float32),
                             torch.ones_like(bad, dtype=torch.float32))
        for p in params:
            p.grad.mul_(poison)
    scaler.unscale_(optimizer)
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return bad


def fused_skip_update(optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler],
                      params: list[Tensor], grad_clip: Optional[float], bad: Tensor) -> Tensor:
    """Skip decided on the device (no host sync): the fused kernel skips the whole update, Adam's moments and
    step count included, when its ``found_inf`` input is not 0, the mechanism GradScaler uses."""
    bad = bad | ~torch.isfinite(_clipped_norm(params, grad_clip))
    optimizer.found_inf = bad.float()
    try:
        optimizer.step()
    finally:
        del optimizer.found_inf
    return bad


def host_skip_update(optimizer: torch.optim.Optimizer, scaler: Optional[torch.amp.GradScaler],
                     params: list[Tensor], grad_clip: Optional[float], bad: Tensor) -> Tensor:
    """Skip decided on the host (one sync per step): a non-fused optimizer has no ``found_inf`` input."""
    bad = bad | ~torch.isfinite(_clipped_norm(params, grad_clip))
    if not bool(bad):
        optimizer.step()
    return bad


def _clipped_norm(params: list[Tensor], grad_clip: Optional[float]) -> Tensor:
    """Clip to ``grad_clip`` and return the total norm (max_norm=inf scales every gradient by exactly 1.0 when no
    clipping is asked for)."""
    return torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip is not None else float("inf"))
