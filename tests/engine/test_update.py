"""The update paths of maelab.engine.update: one function each, chosen once when the Updater is built."""

import pytest
import torch

import maelab.engine.update as update
from maelab.engine.numerics import NanPolicy
from maelab.engine.update import Updater
from maelab.update_paths import (
    fused_skip_update,
    host_skip_update,
    plain_update,
    scaler_update,
    select_update,
    watched_update,
)


def model_and_optimizer(fused=True):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 1))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, fused=fused)


@pytest.mark.parametrize("fused,scaler,guarded,watch,expected", [
    (True, False, False, False, plain_update),  # the compiled step, D's step under stop
    (True, False, False, True, watched_update),  # the MAE's eager step under stop
    (True, True, False, True, scaler_update),  # fp16 under stop: the scaler skips an overflow itself
    (False, True, True, False, scaler_update),  # fp16 under skip
    (True, False, True, False, fused_skip_update),  # skip on the device (found_inf)
    (False, False, True, False, host_skip_update),  # skip after a host check
])
def test_each_update_path_is_one_named_function(fused, scaler, guarded, watch, expected):
    _, opt = model_and_optimizer(fused)
    grad_scaler = torch.amp.GradScaler("cpu") if scaler else None
    assert select_update(opt, grad_scaler, guarded, watch) is expected


@pytest.mark.parametrize("on_nan,expected", [("stop", watched_update), ("skip", fused_skip_update)])
def test_the_updater_chooses_its_path_once_when_built(monkeypatch, on_nan, expected):
    model, opt = model_and_optimizer()
    updater = Updater(opt, None, model.parameters(), None, NanPolicy(on_nan, 10, torch.device("cpu")))
    assert updater.update is expected

    def no_second_choice(*args, **kwargs):
        raise AssertionError("the update path is chosen per step")

    monkeypatch.setattr(update, "select_update", no_second_choice)
    before = [p.detach().clone() for p in model.parameters()]
    updater.zero_grad()
    loss = model(torch.ones(4, 6)).square().mean()
    updater.backward(loss)
    skipped = updater.apply(1e-2, loss)
    assert (skipped is None) == (on_nan == "stop") and (skipped is None or skipped.item() is False)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_the_watched_update_is_the_plain_update_plus_a_flag():
    # the compiled step takes plain_update, the eager step watched_update: the same weights, bit for bit
    weights = []
    for path in (plain_update, watched_update):
        model, opt = model_and_optimizer()
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            model(torch.linspace(-1, 1, 24).view(4, 6)).square().mean().backward()
            params = [p for p in model.parameters() if p.grad is not None]
            flag = path(opt, None, params, None, None)
            assert flag is None if path is plain_update else flag.item() is False
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))
