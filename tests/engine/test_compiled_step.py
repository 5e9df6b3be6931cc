"""train.compile_scope=step: the whole step (augmentation, mask, forward, loss, backward, the AdamW update) compiled,
with every random number drawn before it and the lr a device tensor."""

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from maelab.config import load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.compiled_step import CompiledStep
from maelab.engine.distributed import Dist
from maelab.engine.metrics import read_metrics
from maelab.engine.pretrain import pretrain, step_function
from maelab.engine.run import build_run
from maelab.engine.step import step_generators, train_step
from maelab.errors import UserError

RATIOS = [0.5, 0.6, 0.7, 0.8, 0.9]  # a linear mask schedule's five ratios
WHOLE_STEP = ["train.compile=true", "train.compile_scope=step", "train.compile_backend=aot_eager"]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def build(tmp_path, tiny, *extra, name="run"):
    return build_run(load_config(None, [*tiny, "train.tensorboard=false", "optim.grad_clip=1.0", *extra]),
                     tmp_path / name)


def test_the_run_trains_with_the_compiled_step_only_when_asked(tmp_path, tiny):
    assert step_function(build(tmp_path, tiny, name="eager")) is train_step
    assert step_function(build(tmp_path, tiny, "train.compile=true", name="model")) is train_step
    assert isinstance(step_function(build(tmp_path, tiny, *WHOLE_STEP, name="step")), CompiledStep)


def test_a_pretraining_run_with_the_compiled_step_logs_the_eager_runs_losses(tmp_path, tiny):
    common = [*tiny, "optim.epochs=2", "mask.schedule=linear", "train.tensorboard=false"]
    logged, weights = {}, {}
    for name, extra in (("eager", []), ("compiled", WHOLE_STEP)):
        run_dir = pretrain(load_config(None, [*common, *extra, f"out_dir={tmp_path / name}"]))
        logged[name] = [(m["step"], m["mask_ratio"], m["loss"]) for m in read_metrics(run_dir) if m["kind"] == "step"]
        weights[name] = load_checkpoint(checkpoint_path(run_dir))["model"]
    assert len({ratio for _, ratio, _ in logged["eager"]}) == 2  # the schedule moved the ratio between epochs
    assert [s[:2] for s in logged["compiled"]] == [s[:2] for s in logged["eager"]]
    # aot_eager runs the same aten ops as eager through AOT autograd's traced graphs: equal to float rounding
    assert [s[2] for s in logged["compiled"]] == pytest.approx([s[2] for s in logged["eager"]], rel=1e-5)
    # the same updates: the final weights apart by under 1% of how far they moved (not elementwise: the key bias's
    # gradient is zero up to rounding, softmax being blind to it, and Adam scales that rounding noise to the lr)
    start = flat_weights(build(tmp_path, common, name="init"))
    final = {name: torch.cat([w.flatten() for w in weights[name].values()]) for name in logged}
    assert (final["compiled"] - final["eager"]).norm() < 0.01 * (final["eager"] - start).norm()


def test_the_compiled_step_breaks_only_where_torch_optim_breaks_every_optimizer_step(tmp_path, tiny):
    run = build(tmp_path, tiny, "aug.preset=seed5")  # the report's five extra ops drawn before the graph too
    step = CompiledStep(run)
    x = run.data.x_train[:64]
    gens = step_generators(0, 0)
    from maelab.data.augment import draw_augment
    from maelab.masking import mask_noise
    draws = draw_augment(64, 32, 32, run.cfg.aug, 32, gens.augment, "cpu")
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        explained = torch._dynamo.explain(step.eager_update)(run, x, draws, mask_noise(64, 64, "cpu", gens.mask), 16)
    # one graph through augmentation, forward, backward and clipping; one for the fused AdamW update, which
    # torch.optim fences with graph breaks of its own (its no-grad boundary)
    assert explained.graph_count == 2
    for reason in explained.break_reasons:
        assert "torch/optim/optimizer.py" in reason.user_stack[-1].filename, reason.reason


def test_five_mask_ratios_and_a_new_lr_each_step_recompile_at_most_once_and_the_update_reads_the_lr(tmp_path, tiny):
    run = build(tmp_path, tiny, *WHOLE_STEP)
    counter = CompileCounter()
    step = CompiledStep(run)
    step.update = torch.compile(step.eager_update, backend=counter)
    x = run.data.x_train[:64]
    step(run, x, 1e-3, RATIOS[0], step_generators(0, 0))
    first = counter.frame_count
    for i, ratio in enumerate(RATIOS[1:], start=1):
        step(run, x, 1e-3 * (i + 1), ratio, step_generators(0, i))
    assert counter.frame_count <= first + 1  # the visible count made dynamic once; the lr is a tensor: no guard
    before = flat_weights(run)
    step(run, x, 0.0, RATIOS[0], step_generators(0, 5))
    assert torch.equal(flat_weights(run), before)  # the update reads the lr tensor: lr 0 moves nothing
    assert counter.frame_count <= first + 1


def flat_weights(run):
    return torch.cat([p.detach().flatten() for p in run.model.parameters()])


@pytest.mark.parametrize("setting", ["gan.enabled=true", "optim.accum_steps=2", "train.precision=fp16",
                                     "mask.per_sample=true", "train.on_nan=skip"])
def test_what_the_whole_step_cannot_hold_is_refused_by_name(tiny, setting):
    extra = ["mask.schedule=random"] if setting.startswith("mask.") else []
    with pytest.raises(UserError, match=setting.replace(".", r"\.").split("=")[0]):
        load_config(None, [*tiny, *WHOLE_STEP, *extra, setting])


def test_a_compile_mode_needs_the_inductor_backend(tiny):
    with pytest.raises(UserError, match="train.compile_mode=reduce-overhead"):
        load_config(None, [*tiny, *WHOLE_STEP, "train.compile_mode=reduce-overhead"])


def test_the_whole_step_under_torchrun_is_refused_naming_the_scope_that_works(tmp_path, tiny):
    run = build(tmp_path, tiny, *WHOLE_STEP)
    run.dist = Dist(rank=0, world_size=2)  # what build_run gives each of two torchrun ranks
    with pytest.raises(UserError, match="train.compile_scope=model"):
        step_function(run)


def test_a_compile_scope_or_mode_without_train_compile_is_refused_not_ignored(tiny):
    for setting in ("train.compile_scope=step", "train.compile_mode=reduce-overhead"):
        with pytest.raises(UserError, match="has no effect without train.compile=true"):
            load_config(None, [*tiny, setting])
