from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

from maelab.data.pickles import restricted_load
from maelab.errors import DataError


class _CreatesFile:
    """Unpickling this (with a plain pickle.load) would create ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (self.path, "w"))


class _RunsShell:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.path}",))


def _load(blob: bytes, what: str = "data_batch_1") -> object:
    return restricted_load(io.BytesIO(blob), what)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_loads_numpy_arrays_lists_and_scalars(protocol: int) -> None:
    obj = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3], "n": np.int64(7),
           "names": ("a", b"b"), "f": np.float32(0.5)}
    out = _load(pickle.dumps(obj, protocol=protocol))
    assert isinstance(out, dict)
    np.testing.assert_array_equal(out["data"], obj["data"])
    assert out["data"].dtype == np.uint8
    assert out["labels"] == [1, 2, 3] and out["n"] == 7 and out["names"] == ("a", b"b")


@pytest.mark.parametrize("payload", [_CreatesFile, _RunsShell])
@pytest.mark.parametrize("protocol", [2, 4])
def test_refuses_foreign_globals_and_runs_nothing(tmp_path, payload, protocol: int) -> None:
    victim = tmp_path / "pwned"
    blob = pickle.dumps({"data": payload(str(victim)), "labels": []}, protocol=protocol)
    with pytest.raises(DataError) as info:
        _load(blob, "data_batch_1")
    message = str(info.value)
    assert "refusing to unpickle" in message and "data_batch_1" in message
    assert ("open" in message) or ("system" in message)
    assert "\n" not in message
    assert not victim.exists()


@pytest.mark.parametrize("blob", [b"", b"\x80\x02}q\x00(U\x04data", b"not a pickle at all", b"\x80\x02K"])
def test_truncated_or_garbage_is_a_data_error(blob: bytes) -> None:
    with pytest.raises(DataError, match="test_batch is truncated or corrupt") as info:
        _load(blob, "test_batch")
    assert "\n" not in str(info.value)


def test_truncated_numpy_pickle_is_a_data_error() -> None:
    blob = pickle.dumps({"data": np.zeros((100, 3072), np.uint8)}, protocol=2)
    with pytest.raises(DataError, match="truncated or corrupt"):
        _load(blob[: len(blob) // 2])
