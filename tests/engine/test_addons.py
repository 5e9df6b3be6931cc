"""A second add-on needs no engine edit: one registered through maelab.addons adds its term to a real pretraining
run, logs, is checkpointed under its name, is restored by a resume and is watched by the non-finite check."""

import pytest
import torch

from maelab.addons import FACTORIES, AddOn, AddOnContext, build_addons, register, resolve, unregister
from maelab.config import load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.compile_plan import plan_compile
from maelab.engine.metrics import read_metrics
from maelab.engine.numerics import NanPolicy, NonFiniteLossError
from maelab.engine.pretrain import pretrain, resume
from maelab.engine.run import build_run
from maelab.errors import ConfigError
from maelab.presets import resolve_spec

CPU = torch.device("cpu")


class Counter(AddOn):
    """weight · mean(pred²) added to the objective; counts its terms and after-steps, sums its terms (checkpointed)."""

    name = "counter"

    def __init__(self, weight: float = 0.5) -> None:
        self.weight, self.terms, self.steps, self.total = weight, 0, 0, torch.zeros(())
        self._term = torch.zeros(())

    def objective_term(self, out, loss_scale):
        self.terms += 1
        self._term = self.weight * out.pred.float().square().mean()
        return self._term

    def after_step(self, out, skipped):
        self.steps += 1
        self.total = self.total + self._term.detach()

    def step_logs(self):
        return {"counter_term": self._term.detach()}

    def on_log(self, record):
        return {"counter_terms": self.terms}

    def named_tensors(self):
        return {"total": self.total}

    def state_dict(self):
        return {"terms": self.terms, "steps": self.steps, "total": self.total}

    def load_state_dict(self, state, saved_config, source):
        self.terms, self.steps, self.total = state["terms"], state["steps"], state["total"]


def make_counter(cfg, context):
    return Counter()


@pytest.fixture
def counter():
    """Counter registered for the test (every run it builds gets one); the instances built, newest last."""
    built = []

    def factory(cfg, context):
        built.append(Counter())
        return built[-1]

    register("counter", factory)
    yield built
    unregister("counter")


def tiny_run(tmp_path, tiny, name, *extra):
    return pretrain(load_config(None, [*tiny, "optim.epochs=2", "train.log_every=1", "train.tensorboard=false",
                                       *extra, f"out_dir={tmp_path / name}"]))


def losses(run_dir, kind="step"):
    return [m["loss"] for m in read_metrics(run_dir) if m["kind"] == kind]


def test_a_registered_addon_trains_logs_and_is_checkpointed(tmp_path, tiny):
    plain = tiny_run(tmp_path, tiny, "plain")
    register("counter", make_counter)
    try:
        with_counter = tiny_run(tmp_path, tiny, "counter")
    finally:
        unregister("counter")
    a, b = losses(plain), losses(with_counter)
    assert a[0] == b[0] and a[1:] != b[1:]  # the same MAE and first batch; then its term changed the updates
    steps = len(b)  # 4 an epoch x 2
    assert load_checkpoint(checkpoint_path(with_counter))["counter"]["terms"] == steps
    assert "counter" not in load_checkpoint(checkpoint_path(plain))
    records = [m for m in read_metrics(with_counter) if m["kind"] == "step"]
    assert [r["counter_terms"] for r in records] == list(range(1, steps + 1))  # on_log, at each logged step
    assert all(r["counter_term"] > 0 for r in records)  # step_logs


def test_a_resume_restores_the_addons_state_bit_exact(tmp_path, tiny, counter):
    straight = tiny_run(tmp_path, tiny, "straight")
    split = tiny_run(tmp_path, tiny, "split", "train.stop_after_epochs=1")
    half = load_checkpoint(checkpoint_path(split))["counter"]
    assert half["terms"] == half["steps"] == 4
    resume(split, ["train.stop_after_epochs=null"])
    assert counter[-1].terms == 8  # counted on from the checkpoint's 4
    a, b = load_checkpoint(checkpoint_path(straight)), load_checkpoint(checkpoint_path(split))
    assert a["counter"]["steps"] == b["counter"]["steps"] == 8 and torch.equal(a["counter"]["total"],
                                                                               b["counter"]["total"])
    assert losses(straight, "epoch") == losses(split, "epoch")


def test_a_factory_that_returns_none_adds_nothing(tmp_path, tiny):
    register("off", lambda cfg, context: None)
    try:
        run = build_run(load_config(None, tiny), tmp_path)
    finally:
        unregister("off")
    assert run.addons == [] and run.addon("off") is None and run.addon("gan") is None


def test_the_registry_resolves_import_paths_and_refuses_clashing_names(tiny):
    assert FACTORIES["gan"] == "maelab.gan.addon:from_config"  # named, imported when a run is built
    assert resolve("tests.engine.test_addons:make_counter") is make_counter
    with pytest.raises(ValueError, match="'gan' is registered already"):
        register("gan", make_counter)
    context = AddOnContext(resolve_spec(load_config(None, tiny).model), CPU, "fp32")
    for name, reserved, message in (("other", (), "registered as 'other' is named 'counter'"),
                                    ("counter", ("counter",), "would overwrite that key of a checkpoint")):
        register(name, make_counter)
        try:
            with pytest.raises(ValueError, match=message):
                build_addons(load_config(None, tiny), context, reserved)
        finally:
            unregister(name)


def test_the_non_finite_check_reads_each_addons_tensors():
    class Run:
        model, addons, step = torch.nn.Linear(3, 2), [Counter()], 7

    run = Run()
    NanPolicy("stop", 10, CPU).check_weights(run)  # finite: nothing
    run.addons[0].total = torch.tensor(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"\(1 tensor: counter\.total\)"):
        NanPolicy("stop", 10, CPU).check_weights(run)


def test_the_whole_step_compiled_holds_no_addon(tmp_path, tiny, counter):
    chosen = plan_compile(load_config(None, tiny), torch.device("cuda"), "bf16", 1, ["counter"])
    assert chosen.scope == "model" and "it cannot hold the add-on counter" in chosen.note
    with pytest.raises(ConfigError, match="cannot hold the add-on counter; use train.compile_scope=model"):
        build_run(load_config(None, [*tiny, "train.compile=true", "train.compile_scope=step"]), tmp_path)
