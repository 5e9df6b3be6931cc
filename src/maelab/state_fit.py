"""Loading saved weights into a network built from a (possibly changed) config, with one clear error when they
do not fit: the config keys that changed, the first parameters whose shapes differ, and what to do. Below the engine
(which checks the MAE with it) and its add-ons (the GAN checks its discriminator)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from maelab.errors import UserError

SHOWN = 3  # parameters named in the message; the rest are counted


def changed_settings(saved: Mapping[str, Any], now: Mapping[str, Any], section: str) -> list[str]:
    """``section.key saved -> now`` for every key of a config section whose value differs (sorted)."""
    keys = sorted(set(saved) | set(now))
    return [f"{section}.{k} {saved.get(k)} -> {now.get(k)}" for k in keys if saved.get(k) != now.get(k)]


def misfits(module: nn.Module, state: Mapping[str, Tensor]) -> list[str]:
    """What stops ``module.load_state_dict(state)``: missing and unexpected keys, and shape differences."""
    own = module.state_dict()
    found = [f"{k} (not in the checkpoint)" for k in own if k not in state]
    found += [f"{k} (in the checkpoint only)" for k in state if k not in own]
    found += [f"{k} {list(state[k].shape)} in the checkpoint, {list(v.shape)} now" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return found


def load_fitting(module: nn.Module, state: Mapping[str, Tensor], what: str, changed: list[str], fix: str) -> None:
    """``module.load_state_dict(state)`` after :func:`require_fit`.

    Settings that do not change a parameter's shape (``model.img_size``: the sin-cos positions are buffers rebuilt
    for the new grid) load as before.
    """
    require_fit(module, state, what, changed, fix)
    module.load_state_dict(state)


def require_fit(module: nn.Module, state: Mapping[str, Tensor], what: str, changed: list[str], fix: str) -> None:
    """Raise a UserError naming the ``changed`` config settings and the parameters of ``state`` that do not fit
    ``module``, ending in ``fix``; nothing when they fit. ``what`` names the weights and where they come from
    (e.g. "the MAE saved in runs/k1/checkpoints/last.pt")."""
    problems = misfits(module, state)
    if not problems:
        return
    cause = f" ({', '.join(changed)})" if changed else ""
    shown = "; ".join(problems[:SHOWN]) + (f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else "")
    raise UserError(f"{what} does not fit the network built from the changed settings{cause}: {shown}. {fix}")
