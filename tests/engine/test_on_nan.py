"""train.on_nan=stop|skip through the engine: a NaN injected into the MAE's loss at chosen steps."""

import copy
import itertools

import pytest
import torch

from maelab.cli import main
from maelab.config import load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.metrics import read_metrics
from maelab.engine.numerics import NonFiniteLossError
from maelab.engine.pretrain import pretrain
from maelab.engine.run import build_run
from maelab.engine.step import step_generators, train_step
from maelab.engine.update import Updater
from maelab.models.mae import MAE, MAEOutput
from tests.conftest import TINY


def poison(monkeypatch, bad_steps):
    """MAE.forward returns a NaN loss (and so NaN gradients) at the given calls (one call per step)."""
    original, calls = MAE.forward, itertools.count()

    def forward(self, imgs, mask):
        loss, pred = original(self, imgs, mask)
        return MAEOutput(loss * float("nan") if next(calls) in bad_steps else loss, pred)

    monkeypatch.setattr(MAE, "forward", forward)


def state(run):
    """Everything a step may change: the MAE's and D's weights and optimizer states."""
    parts = [run.model.state_dict(), run.optimizer.state_dict()["state"]]
    if run.addon("gan") is not None:
        parts += [run.addon("gan").disc.state_dict(), run.addon("gan").optimizer.state_dict()["state"]]
    return copy.deepcopy(parts)


def flat(parts):
    out = []
    for part in parts:
        for value in part.values():
            out.extend(flat([value]) if isinstance(value, dict) else [torch.as_tensor(value)])
    return out


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(flat(a), flat(b), strict=True))


def step(run):
    loss = train_step(run, run.data.x_train[:64], 1e-3, 0.75, step_generators(0, run.step))
    run.step += 1
    return loss


@pytest.mark.parametrize("gan", ["false", "true"])
def test_a_skipped_step_changes_no_weight_and_no_optimizer_state(tmp_path, tiny, monkeypatch, gan):
    cfg = load_config(None, [*tiny, "train.on_nan=skip", f"gan.enabled={gan}", "gan.width=4", "gan.depth=2"])
    run = build_run(cfg, tmp_path)
    poison(monkeypatch, {2})
    step(run), step(run)
    before = state(run)
    assert not torch.isfinite(step(run))
    assert same(before, state(run))  # the MAE, AdamW's moments and step count, and D (it skips with the MAE)
    assert run.nan.log_fields() == {"skipped_steps": 1}
    step(run)
    assert not same(before, state(run))


def nan_run(tmp_path, tiny, on_nan, *extra):
    cfg = load_config(None, [*tiny, "optim.epochs=2", "train.log_every=1", "train.tensorboard=false",
                             f"train.on_nan={on_nan}", f"out_dir={tmp_path / on_nan}", *extra])
    return pretrain(cfg)


def test_skip_counts_the_step_in_the_metrics_and_the_run_finishes(tmp_path, tiny, monkeypatch):
    poison(monkeypatch, {5})  # 4 steps per epoch: the second step of epoch 1
    run_dir = nan_run(tmp_path, tiny, "skip")
    records = read_metrics(run_dir)
    steps = {r["step"]: r["skipped_steps"] for r in records if r["kind"] == "step"}
    assert steps == {1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 1, 7: 0, 8: 0}  # step 5 is logged as run.step 6
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["skipped_steps"] for r in epochs] == [0, 1]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in epochs)  # the mean leaves the NaN out
    assert load_checkpoint(checkpoint_path(run_dir))["step"] == 8


def test_an_epoch_whose_every_step_was_skipped_has_a_null_loss_with_the_reason(tmp_path, tiny, monkeypatch):
    poison(monkeypatch, {4, 5, 6, 7})  # all 4 steps of epoch 1 (fewer than train.max_skipped_steps=10 in a row)
    run_dir = nan_run(tmp_path, tiny, "skip")
    text = (run_dir / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text  # standard JSON only
    records = read_metrics(run_dir)
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert epochs[0]["loss"] > 0 and "undefined" not in epochs[0]
    assert epochs[1]["loss"] is None and epochs[1]["skipped_steps"] == 4  # was 0.0: a mean over no steps
    assert epochs[1]["undefined"]["loss"].startswith("no step of the epoch ended with a finite loss")
    skipped = [r for r in records if r["kind"] == "step" and r["step"] > 4]
    assert all(r["loss"] is None and r["undefined"] == {"loss": "non-finite (nan)"} for r in skipped)


def test_stop_still_stops_at_the_same_injected_nan(tmp_path, tiny, monkeypatch):
    poison(monkeypatch, {5})
    with pytest.raises(NonFiniteLossError, match="non-finite at step 6"):  # the 6th step: metrics.jsonl's step 6
        nan_run(tmp_path, tiny, "stop")
    assert load_checkpoint(checkpoint_path(tmp_path / "stop"))["step"] == 4


def test_skip_stops_after_too_many_skipped_steps_in_a_row(tmp_path, tiny, monkeypatch):
    poison(monkeypatch, set(range(5, 100)))
    with pytest.raises(NonFiniteLossError, match=r"3 steps in a row \(steps 6 to 8\)"):
        nan_run(tmp_path, tiny, "skip", "train.max_skipped_steps=2")
    assert load_checkpoint(checkpoint_path(tmp_path / "skip"))["step"] == 4


def test_skip_without_a_nan_trains_the_same_weights_as_stop(tmp_path, tiny):
    a = load_checkpoint(checkpoint_path(nan_run(tmp_path, tiny, "stop", "optim.grad_clip=1.0")))["model"]
    b = load_checkpoint(checkpoint_path(nan_run(tmp_path, tiny, "skip", "optim.grad_clip=1.0")))["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def inf_gradient(monkeypatch, at):
    """The ``at``-th backward (0-based: one per step) leaves an infinite gradient in encoder.cls_token while the loss
    stays finite (an overflow in the backward pass): clipping or AdamW then writes NaN into the weights."""
    original, calls = Updater.backward, itertools.count()

    def backward(self, objective):
        original(self, objective)
        if next(calls) == at:
            self.params[0].grad.view(-1)[0] = float("inf")  # params[0]: encoder.cls_token

    monkeypatch.setattr(Updater, "backward", backward)


def cli_run(out, *extra):
    return main(["pretrain", *TINY, "optim.epochs=2", "train.tensorboard=false", f"out_dir={out}", *extra])


def one_error_line(capsys):
    """The one error line on stderr (the start banner's lines aside), no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("maelab: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.mark.parametrize("clip", ["null", "1.0"])
def test_an_infinite_gradient_under_a_finite_loss_stops_before_its_nan_weights_reach_a_checkpoint(
        tmp_path, monkeypatch, capsys, clip):
    inf_gradient(monkeypatch, at=3)  # the last step of epoch 0: its checkpoint would have held a NaN cls_token
    assert cli_run(tmp_path / "run", f"optim.grad_clip={clip}") == 1
    line = one_error_line(capsys)
    assert line.startswith("maelab: error: the gradients became non-finite at step 4 (its loss was finite): the run "
                           "stopped; it had written no checkpoint yet, so none is kept; lower optim.lr")
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    steps = [r["step"] for r in read_metrics(tmp_path / "run") if r["kind"] == "step"]
    assert steps == [2]  # metrics.jsonl numbers the 4th step 4 as well: it was not logged (log_every=2, stopped)


def test_an_infinite_gradient_at_the_last_step_exits_non_zero_and_keeps_the_good_checkpoint(tmp_path, monkeypatch,
                                                                                           capsys):
    inf_gradient(monkeypatch, at=7)  # the run's last step: it exited 0 with NaN weights in last.pt
    out = tmp_path / "run"
    assert cli_run(out) == 1
    line = one_error_line(capsys)
    last = out / "checkpoints" / "last.pt"
    assert f"non-finite at step 8 (its loss was finite): the run stopped; its last good checkpoint, {last} (step 4, " \
           "finite weights), is kept;" in line
    kept = load_checkpoint(last)
    assert kept["step"] == 4 and all(torch.isfinite(v).all() for v in kept["model"].values())


def test_weights_that_became_non_finite_are_never_written_to_a_checkpoint(tmp_path, monkeypatch, capsys):
    original, calls = Updater.apply, itertools.count()

    def apply(self, lr, objective):  # an update that leaves NaN weights behind finite gradients (any cause)
        skipped = original(self, lr, objective)
        if next(calls) == 7:
            with torch.no_grad():
                self.params[0].view(-1)[0] = float("nan")
        return skipped

    monkeypatch.setattr(Updater, "apply", apply)
    out = tmp_path / "run"
    assert cli_run(out, "train.on_nan=skip") == 1  # skip too: the check before a checkpoint is the policy's last word
    line = one_error_line(capsys)
    assert line.startswith("maelab: error: the weights became non-finite by step 8 (1 tensor: model.encoder.cls_token)"
                           "; they were not written to a checkpoint: the run stopped; its last good checkpoint")
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4


def test_stop_stops_at_an_injected_nan_under_the_whole_step_compiled_too(tmp_path, tiny, monkeypatch):
    # the GPU's default step: its loss is read by the same loop (the NaN put into the loss it returns, as the
    # compiled graph cannot be poisoned from Python); its gradients are not watched (docs/reliability.md)
    from maelab.engine.compiled_step import CompiledStep

    original, calls = CompiledStep.__call__, itertools.count()

    def call(self, *args, **kwargs):
        loss = original(self, *args, **kwargs)
        return loss * float("nan") if next(calls) == 5 else loss

    monkeypatch.setattr(CompiledStep, "__call__", call)
    torch._dynamo.reset()
    with pytest.raises(NonFiniteLossError, match="non-finite at step 6"):
        nan_run(tmp_path, tiny, "stop", "train.compile=true", "train.compile_scope=step",
                "train.compile_backend=eager")
    torch._dynamo.reset()
    assert next(calls) == 6 and load_checkpoint(checkpoint_path(tmp_path / "stop"))["step"] == 4
