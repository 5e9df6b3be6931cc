"""Unpickling of dataset files with a whitelist: numpy arrays and plain containers, nothing else.

A pickle can run any importable callable when it is loaded (``os.system``, ``builtins.open``...).
The CIFAR-10 batches and the PROPS pickles only need numpy's array reconstruction, so every
other global is refused with a ``DataError`` before it is imported.
"""

from __future__ import annotations

import importlib
import pickle
from typing import IO, Any

from maelab.errors import DataError

# (module, name) pairs a dataset pickle may name. numpy >= 2 writes ``numpy._core``; older
# files (and the official CIFAR-10 batches) name ``numpy.core``. ``_codecs.encode`` is how a
# protocol-2 pickle written by Python 3 stores bytes; ``_frombuffer`` is numpy's protocol-5 path.
_ALLOWED = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("__builtin__", "set"),
    ("__builtin__", "frozenset"),
    ("__builtin__", "bytearray"),
})


def _import_global(module: str, name: str) -> Any:
    """Resolve an allowed global, mapping numpy.core <-> numpy._core to whichever this numpy has."""
    if module == "__builtin__":
        module = "builtins"
    candidates = [module]
    if module.startswith("numpy.core"):
        candidates.insert(0, "numpy._core" + module[len("numpy.core"):])  # avoids numpy 2's deprecation warning
    elif module.startswith("numpy._core"):
        candidates.append("numpy.core" + module[len("numpy._core"):])
    for candidate in candidates:
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"cannot import {module}.{name}")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file_obj: IO[bytes], what: str, kind: str) -> None:
        super().__init__(file_obj, encoding="latin1")
        self.what = what
        self.kind = kind

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise DataError(
                f"refusing to unpickle {module}.{name} from {self.what}: "
                f"the file is not a {self.kind}; replace it with the official file"
            )
        return _import_global(module, name)


def restricted_load(file_obj: IO[bytes], what: str, kind: str = "CIFAR-10 batch") -> object:
    """Unpickle ``file_obj`` allowing only numpy arrays, numpy scalars and builtin containers.

    ``what`` names the file in error messages; ``kind`` says what the file should have been.
    A refused global or a truncated/corrupt file raises ``DataError``.
    """
    try:
        return _RestrictedUnpickler(file_obj, what, kind).load()
    except DataError:
        raise
    except Exception as err:  # UnpicklingError, EOFError, ValueError, TypeError, struct.error, ...
        detail = str(err).splitlines()[0] if str(err) else ""
        reason = type(err).__name__ + (f": {detail}" if detail else "")
        raise DataError(
            f"{what} is truncated or corrupt ({reason}): replace it with the official file"
        ) from None
