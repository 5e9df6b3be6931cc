"""Undefined values: ``null`` with a reason in JSON, "–" in tables, never a huge or made-up number.

One shape everywhere a result is written (``RUN_DIR/eval/<name>.json``, the epoch records of metrics.jsonl):

- a value that is undefined is ``null``, and ``result["undefined"][key]`` says why
  (``{"sharpness_ratio": null, "undefined": {"sharpness_ratio": "the targets have no edges ..."}}``);
- a mean that left some items out because the value is undefined for them says how many, of how many, and why:
  ``result["left_out"][key] = {"count": 3, "of": 40, "reason": "..."}``.

Both maps are present only when they have an entry. JSON is written with ``allow_nan=False`` (standard JSON has
no NaN or Infinity), so a non-finite number that slipped through fails loudly, naming its key.
"""

from __future__ import annotations

import json
import math
from typing import Any, Optional

UNDEFINED = "undefined"
LEFT_OUT = "left_out"
DASH = "–"  # what a table shows for an undefined value


def set_undefined(result: dict[str, Any], key: str, reason: str) -> None:
    """``result[key] = None`` and record ``reason`` under ``result["undefined"][key]``."""
    result[key] = None
    result.setdefault(UNDEFINED, {})[key] = reason


def set_left_out(result: dict[str, Any], key: str, count: int, of: int, reason: str) -> None:
    """Record that the mean ``result[key]`` left ``count`` of ``of`` items out, and why."""
    result.setdefault(LEFT_OUT, {})[key] = {"count": int(count), "of": int(of), "reason": reason}


def reason_of(result: dict[str, Any], key: str) -> str:
    """Why ``result[key]`` is undefined ("" when it is defined or the result predates the map)."""
    return str(result.get(UNDEFINED, {}).get(key, ""))


def is_defined(value: Any) -> bool:
    """A finite number (bool excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: Optional[float], spec: str = ".2f") -> str:
    """``value`` formatted with ``spec``, or "–" when it is None or not finite."""
    return format(value, spec) if is_defined(value) else DASH


def non_finite_keys(obj: Any, path: str = "") -> list[str]:
    """Dotted paths of the NaN / ±inf floats anywhere in ``obj`` (dicts, lists, tuples)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return [path or "<value>"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in non_finite_keys(v, f"{path}.{k}" if path else str(k))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_finite_keys(v, f"{path}[{i}]")]
    return []


def dumps(obj: Any, indent: Optional[int] = 2) -> str:
    """Standard JSON (``allow_nan=False``); a NaN or infinity raises ValueError naming where it is."""
    bad = non_finite_keys(obj)
    if bad:
        raise ValueError(f"non-finite number at {', '.join(bad)}: write null with a reason under "
                         f"'{UNDEFINED}' (maelab.undefined.set_undefined)")
    return json.dumps(obj, indent=indent, allow_nan=False)


def finite_or_null(record: dict[str, Any], reason: str = "not a finite number") -> dict[str, Any]:
    """A copy of a flat ``record`` whose NaN / ±inf floats are None, each with ``reason`` (and the value) under
    ``"undefined"``: for logs whose numbers may legitimately be non-finite (a skipped step's loss)."""
    out = dict(record)
    for key, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            set_undefined(out, key, f"{reason} ({value})")
    return out
