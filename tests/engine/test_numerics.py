import copy

import pytest
import torch

from maelab.engine.numerics import NanPolicy, NonFiniteLossError
from maelab.update_paths import optimizer_step

NAN = float("nan")


def setup(kind):
    """A small model, its AdamW (host-checked, or fused: the device path) and, for 'scaler', a GradScaler."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1, fused=kind == "fused")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10) if kind == "scaler" else None
    return model, opt, scaler


def backward_step(model, opt, scaler, factor=1.0, guard=True, grad_clip=None):
    x = torch.linspace(-1, 1, 24).view(4, 6)
    loss = model(x).square().mean() * factor
    opt.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    return optimizer_step(opt, scaler, model.parameters(), grad_clip, loss if guard else None)


def snapshot(model, opt):
    return copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()["state"])


def same_state(a, b):
    (wa, sa), (wb, sb) = a, b
    return all(torch.equal(wa[k], wb[k]) for k in wa) and all(
        torch.equal(torch.as_tensor(sa[i][k]), torch.as_tensor(sb[i][k])) for i in sa for k in sa[i])


@pytest.mark.parametrize("kind", ["host", "fused", "scaler"])
def test_a_non_finite_loss_changes_no_weight_and_no_optimizer_state(kind):
    model, opt, scaler = setup(kind)
    assert backward_step(model, opt, scaler).item() is False
    before = snapshot(model, opt)
    assert backward_step(model, opt, scaler, factor=NAN).item() is True
    assert same_state(before, snapshot(model, opt))  # weights, Adam moments and the step count
    assert backward_step(model, opt, scaler).item() is False
    assert not same_state(before, snapshot(model, opt))  # and training goes on


@pytest.mark.parametrize("kind", ["host", "fused"])
def test_non_finite_gradients_with_a_finite_loss_are_skipped(kind):
    model, opt, _ = setup(kind)
    backward_step(model, opt, None)
    before = snapshot(model, opt)
    x = torch.ones(2, 6)
    loss = model(x).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    model[0].weight.grad[0, 0] = float("inf")
    assert optimizer_step(opt, None, model.parameters(), 1.0, loss).item() is True
    assert same_state(before, snapshot(model, opt))


@pytest.mark.parametrize("kind", ["host", "fused", "scaler"])
@pytest.mark.parametrize("grad_clip", [None, 0.5])
def test_the_guard_does_not_change_a_good_step(kind, grad_clip):
    runs = []
    for guard in (False, True):
        model, opt, scaler = setup(kind)
        for _ in range(3):
            backward_step(model, opt, scaler, guard=guard, grad_clip=grad_clip)
        runs.append(snapshot(model, opt))
    assert same_state(*runs)


def check(policy, losses=(), first_step=0):
    """The loop's check: the policy's flags read in one transfer (as EpochStats.read does with the losses)."""
    policy.check(losses, first_step, torch.stack(policy.flags()).tolist())


def test_stop_policy_names_the_first_bad_step():
    policy = NanPolicy("stop", 10, torch.device("cpu"))
    check(policy, [1.0, 2.0], first_step=0)  # finite: goes on
    with pytest.raises(NonFiniteLossError, match="non-finite at step 13: the run stopped"):
        check(policy, [1.0, 2.0, NAN, float("inf")], first_step=10)
    assert policy.log_fields() == {} and policy.epoch_fields() == {}


def test_skip_policy_counts_skipped_steps_and_stops_after_too_many_in_a_row():
    policy = NanPolicy("skip", 2, torch.device("cpu"))
    pattern = [0, 1, 1, 0, 1, 0]  # skipped steps 1, 2, 4: never more than 2 in a row
    for step, skipped in enumerate(pattern):
        policy.add(torch.tensor(NAN if skipped else 1.0), torch.tensor(bool(skipped)), step)
        check(policy)
        if step == 2:
            assert policy.log_fields() == {"skipped_steps": 2}
    assert policy.log_fields() == {"skipped_steps": 1}
    assert policy.epoch_fields() == {"skipped_steps": 3} and policy.epoch_fields() == {"skipped_steps": 0}
    for step in range(6, 9):
        policy.add(torch.tensor(NAN), torch.tensor(True), step)
    with pytest.raises(NonFiniteLossError, match=r"3 steps in a row \(steps 7 to 9\).*max_skipped_steps=2"):
        check(policy)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_skip_is_decided_on_the_device_without_a_host_sync():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    policy = NanPolicy("skip", 10, torch.device("cuda"))
    x = torch.ones(4, 6, device="cuda")

    def guarded_step(factor, step):
        loss = model(x).square().mean() * factor
        opt.zero_grad(set_to_none=True)
        loss.backward()
        policy.add(loss.detach(), optimizer_step(opt, None, model.parameters(), None, loss), step)

    guarded_step(1.0, 0)  # lazy state initialisation outside the check
    before = snapshot(model, opt)
    torch.cuda.set_sync_debug_mode("error")  # any host sync raises
    try:
        guarded_step(NAN, 1)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert same_state(before, snapshot(model, opt))
    assert policy.epoch_fields() == {"skipped_steps": 1}


@pytest.mark.parametrize("kind", ["host", "fused"])
@pytest.mark.parametrize("grad_clip", [None, 1.0])
def test_stop_watches_the_gradients_an_infinite_one_under_a_finite_loss_is_flagged(kind, grad_clip):
    model, opt, _ = setup(kind)
    assert backward_step(model, opt, None, guard=False) is None  # unwatched: the plain step, as before
    loss = model(torch.ones(2, 6)).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    assert optimizer_step(opt, None, model.parameters(), grad_clip, watch=True).item() is False
    loss = model(torch.ones(2, 6)).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    model[0].weight.grad[0, 0] = float("inf")
    assert torch.isfinite(loss)
    assert optimizer_step(opt, None, model.parameters(), grad_clip, watch=True).item() is True
    assert not torch.isfinite(model[0].weight).all()  # the step was taken: what stop must keep from a checkpoint


def test_stop_policy_names_the_first_step_with_non_finite_gradients_numbered_from_1():
    policy = NanPolicy("stop", 10, torch.device("cpu"))
    for step, bad in enumerate([False, False, True, True]):
        policy.watch(torch.tensor(bad))
        policy.add(torch.tensor(1.0), None, step)
    with pytest.raises(NonFiniteLossError, match=r"^the gradients became non-finite at step 3 \(its loss was "
                                                 r"finite\): the run stopped; lower optim.lr"):
        check(policy, [1.0, 1.0, 1.0, NAN], first_step=0)  # the NaN loss at step 4 came after: the gradients are named
    policy = NanPolicy("stop", 10, torch.device("cpu"))
    policy.watch(torch.tensor(True))
    policy.add(torch.tensor(NAN), None, 0)
    with pytest.raises(NonFiniteLossError, match="^the loss became non-finite at step 1:"):
        check(policy, [NAN], first_step=0)  # both at once: the loss is named


def test_check_weights_names_the_non_finite_tensors():
    class Run:
        model, addons, step = torch.nn.Linear(3, 2), [], 7

    run = Run()
    run.check = NanPolicy("stop", 10, torch.device("cpu"))
    run.check.check_weights(run)  # finite: nothing
    with torch.no_grad():
        run.model.bias[1] = float("inf")
    with pytest.raises(NonFiniteLossError, match=r"weights became non-finite by step 7 \(1 tensor: model\.bias\); "
                                                 "they were not written to a checkpoint"):
        run.check.check_weights(run)
