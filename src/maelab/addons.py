"""Add-ons of the pretraining step: an extra loss term or a second model (the GAN, an EMA teacher) written as an
object the step calls, not as an edit of the engine. Below both the engine, which holds the run's add-ons as a list
and names none of them, and the add-ons themselves (``gan/``).

An add-on (:class:`AddOn`) has a ``name``, its key in a checkpoint, and

- ``active(epoch)``: whether it trains in ``epoch``;
- ``frozen()``: a context in which its own parameters take no gradient from the MAE's objective;
- ``objective_term(out, loss_scale)``: a 0-d tensor added to the MAE's loss, inside the step's autocast;
- ``after_step(out, skipped)``: after the MAE's optimizer step (``skipped``: the 0-d bool of
  ``train.on_nan=skip``, None otherwise);
- ``step_logs()``: detached 0-d device tensors for the step's record (averaged over ranks);
- ``on_log(record)``: at a logged step, fields to add to its record (the GAN's collapse watch);
- ``named_tensors()``: the tensors the non-finite check reads before a checkpoint is written;
- ``state_dict()`` / ``load_state_dict(state, saved_config, source)``: what a checkpoint keeps under ``name``, and
  its restore, which refuses with one clear error a state that does not fit what the config built now.

Subclassing :class:`AddOn` gives the defaults of every method but ``objective_term``: always active, nothing
frozen, nothing after the step, no logs, no tensors, no state.

The run builds its add-ons with :func:`build_addons`, once, after the MAE and its optimizer (so that a seeded run
draws the same numbers with any add-on on or off before it): every factory of :data:`FACTORIES` is called with the
config and an :class:`AddOnContext`, and returns its add-on, or None when the config leaves it off. A factory is
named by its import path (``"module:function"``, imported when a run is built, as an entry point is) or given as a
callable; :func:`register` adds one (another package's add-on, a test's).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol

import torch
from torch import Tensor, nn

from maelab.masking import Mask
from maelab.presets import ModelSpec


@dataclass(frozen=True)
class StepOutput:
    """What the MAE computed in one step, for the add-ons: the normalised batch imgs [N, 3, H, W], the loss
    (0-d), the prediction pred [N, M, P] at the masked patches and the drawn mask (:class:`maelab.masking.Mask`;
    ``model.reconstruct(imgs, pred, mask)`` is the reconstructed image)."""

    model: Any  # the MAE (not its DDP or compiled wrapper)
    imgs: Tensor
    loss: Tensor
    pred: Tensor
    mask: Mask


class AddOn(Protocol):
    """What the engine calls on an add-on (the module docstring says when); subclass it for the defaults."""

    name: str  # its key in a checkpoint, and the prefix of its tensors' names in messages

    def objective_term(self, out: StepOutput, loss_scale: Tensor | float) -> Tensor: ...

    def active(self, epoch: int) -> bool:
        return True

    def frozen(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def after_step(self, out: StepOutput, skipped: Optional[Tensor]) -> None:
        return None

    def step_logs(self) -> dict[str, Tensor]:
        return {}

    def on_log(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def named_tensors(self) -> dict[str, Tensor]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any], saved_config: Mapping[str, Any], source: str) -> None:
        """Restore ``state``; ``saved_config``: the checkpoint's config (a dict), to name the settings that changed
        when ``state`` does not fit; ``source``: where it comes from, for that error."""
        return None


@dataclass(frozen=True)
class AddOnContext:
    """What a factory builds an add-on from, beside the config: the MAE's architecture (``spec``: img_size,
    patch_size), the run's device and precision, and under torchrun ``average_grads(module)``, which averages a
    module's gradients over the ranks in place (None in one process: a module outside DDP syncs through it)."""

    spec: ModelSpec
    device: torch.device
    precision: str
    average_grads: Optional[Callable[[nn.Module], None]] = None


Factory = Callable[[Any, AddOnContext], Optional[AddOn]]  # (the Config, the context) -> the add-on, or None: off
FACTORIES: dict[str, str | Factory] = {
    "gan": "maelab.gan.addon:from_config",  # the report's adversarial loss (gan.enabled)
}


def register(name: str, factory: str | Factory) -> None:
    """Add the factory of the add-on ``name`` (a ``"module:function"`` path or a callable); built after those
    registered before it. A name that is registered already is a ValueError (:func:`unregister` it first)."""
    if name in FACTORIES:
        raise ValueError(f"an add-on named {name!r} is registered already")
    FACTORIES[name] = factory


def unregister(name: str) -> None:
    """Remove the factory of the add-on ``name`` (nothing when there is none)."""
    FACTORIES.pop(name, None)


def resolve(factory: str | Factory) -> Factory:
    """The callable a factory entry names: ``"module:function"`` imported now, a callable as it is."""
    if callable(factory):
        return factory
    module, _, attr = factory.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_addons(cfg: Any, context: AddOnContext, reserved: Collection[str] = ()) -> list[AddOn]:
    """The add-ons ``cfg`` turns on, in the order of :data:`FACTORIES`. Each must be named as it is registered;
    ``reserved``: the names a checkpoint already uses for something else, refused (a ValueError)."""
    addons = []
    for name, factory in FACTORIES.items():
        addon = resolve(factory)(cfg, context)
        if addon is None:
            continue
        if addon.name != name or name in reserved:
            why = f"is named {addon.name!r}" if addon.name != name else "would overwrite that key of a checkpoint"
            raise ValueError(f"the add-on registered as {name!r} {why}")
        addons.append(addon)
    return addons


@contextlib.contextmanager
def all_frozen(addons: Sequence[AddOn]) -> Iterator[None]:
    """Every add-on's own parameters frozen for the block."""
    with contextlib.ExitStack() as stack:
        for addon in addons:
            stack.enter_context(addon.frozen())
        yield
