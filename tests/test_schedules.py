import math

import pytest

from maelab.schedules import lr_at


@pytest.mark.parametrize("step,expected", [
    (0, 0.0), (5, 0.5), (10, 1.0),
    (55, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))),
    (100, 0.1), (150, 0.1),
])
def test_lr_warmup_then_cosine(step, expected):
    assert lr_at(step, total_steps=100, warmup_steps=10, peak_lr=1.0, min_lr=0.1) == pytest.approx(expected)


def test_lr_without_warmup_starts_at_peak_and_decreases():
    values = [lr_at(s, 50, 0, 2.0) for s in range(51)]
    assert values[0] == 2.0
    assert all(a >= b for a, b in zip(values[:-1], values[1:], strict=True))
    assert values[-1] == pytest.approx(0.0)


@pytest.mark.parametrize("kwargs", [
    {"step": 0, "total_steps": 0, "warmup_steps": 0},
    {"step": 0, "total_steps": 10, "warmup_steps": 11},
    {"step": -1, "total_steps": 10, "warmup_steps": 1},
])
def test_lr_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        lr_at(peak_lr=1.0, **kwargs)
