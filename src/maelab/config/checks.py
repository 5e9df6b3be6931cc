"""Value checks shared by the config sections: each failure is one ConfigError naming the key and the fix."""

from __future__ import annotations

from typing import Optional

from maelab.errors import ConfigError


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not valid: use one of {', '.join(allowed)}")


def _positive(name: str, value: Optional[float], allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value} is not valid: it must be {bound}")
