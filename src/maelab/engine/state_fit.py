"""Saved weights against a network built from a changed config: :mod:`maelab.state_fit` (below the engine, whose
add-ons check their own saved state with it), importable from here too."""

from maelab.state_fit import SHOWN, changed_settings, load_fitting, misfits, require_fit  # noqa: F401 - re-exported
