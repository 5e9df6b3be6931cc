"""The CPU fast paths' tests run with every path on (MAELAB_CPU_KERNELS=1; the rest of the suite uses PyTorch's
ops, tests/conftest.py); tests of the timed choice unset it themselves."""

import pytest


@pytest.fixture(autouse=True)
def every_fast_path(monkeypatch):
    monkeypatch.setenv("MAELAB_CPU_KERNELS", "1")
