"""A config read as it was written: a YAML 1.1 boolean word given for a text setting (``name: no`` in a file,
``name=off`` on the command line: YAML reads yes/no/on/off/true/false as a boolean, and the text setting then held
"False", a run folder runs/False-<time>) is one ConfigError naming the key and the fix. (A key given twice in one
YAML mapping: ``loading.py``.)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, get_type_hints

from maelab.errors import ConfigError

TEXT_TYPES = (str, Optional[str])


def refuse_booleans_for_text(layer: Any, source: str, section: type, prefix: str = "") -> None:
    """ConfigError when ``layer`` (a plain dict, as read from YAML or the overrides) gives a boolean for a text
    setting of the dataclass ``section``: a YAML 1.1 word such as ``no`` or ``off`` that was meant as text.
    Unknown keys and other types are left to the merge's own checks."""
    if not isinstance(layer, dict):
        return
    hints = get_type_hints(section)
    for key, value in layer.items():
        hint, name = hints.get(str(key)), f"{prefix}{key}"
        if dataclasses.is_dataclass(hint):
            refuse_booleans_for_text(value, source, hint, f"{name}.")
        elif isinstance(value, bool) and hint in TEXT_TYPES:
            raise ConfigError(f"{name} in {source} is the YAML boolean {str(value).lower()} (YAML reads yes/no/on/off "
                              f"as true/false), but {name} is text: quote the word you meant, as in {name}: 'no' "
                              f"(a file) or \"{name}='no'\" (the command line)")
