"""train.compile_scope=step: the whole step (augmentation, mask, forward, loss, backward, the AdamW update) compiled,
with every random number drawn before it and the lr a device tensor."""

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from maelab.config import load_config
from maelab.engine.checkpoint import checkpoint_path, load_checkpoint
from maelab.engine.compile_plan import plan_compile
from maelab.engine.compiled_step import CompiledStep
from maelab.engine.metrics import read_metrics
from maelab.engine.pretrain import pretrain, resume, step_function
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


def test_a_compiled_run_stopped_and_resumed_logs_the_eager_runs_losses(tmp_path, tiny):
    # the compiled run stops after its first epoch and resumes from the checkpoint the compiled step wrote (its
    # optimizer's lr is a device tensor): still the uninterrupted eager run's losses and updates
    common = [*tiny, "optim.epochs=2", "mask.schedule=linear", "train.tensorboard=false"]
    eager = pretrain(load_config(None, [*common, f"out_dir={tmp_path / 'eager'}"]))
    compiled = pretrain(load_config(None, [*common, *WHOLE_STEP, "train.stop_after_epochs=1",
                                           f"out_dir={tmp_path / 'compiled'}"]))
    saved = load_checkpoint(checkpoint_path(compiled))
    assert saved["step"] == 4 and all(torch.is_tensor(g["lr"]) for g in saved["optimizer"]["param_groups"])
    resume(compiled, ["train.stop_after_epochs=null"])
    logged = {name: [(m["step"], m["mask_ratio"], m["loss"]) for m in read_metrics(d) if m["kind"] == "step"]
              for name, d in (("eager", eager), ("compiled", compiled))}
    assert len({ratio for _, ratio, _ in logged["eager"]}) == 2  # the schedule moved the ratio between epochs
    assert [s[:2] for s in logged["compiled"]] == [s[:2] for s in logged["eager"]]
    # aot_eager runs the same aten ops as eager through AOT autograd's traced graphs: equal to float rounding
    assert [s[2] for s in logged["compiled"]] == pytest.approx([s[2] for s in logged["eager"]], rel=1e-5)
    # the same updates: the final weights apart by under 1% of how far they moved (not elementwise: the key bias's
    # gradient is zero up to rounding, softmax being blind to it, and Adam scales that rounding noise to the lr)
    start = flat_weights(build(tmp_path, common, name="init"))
    final = {name: torch.cat([w.flatten() for w in load_checkpoint(checkpoint_path(d))["model"].values()])
             for name, d in (("eager", eager), ("compiled", compiled))}
    assert (final["compiled"] - final["eager"]).norm() < 0.01 * (final["eager"] - start).norm()


def test_the_compiled_step_breaks_only_where_torch_optim_breaks_every_optimizer_step(tmp_path, tiny):
    run = build(tmp_path, tiny, "aug.preset=seed5")  # the report's five extra ops drawn before the graph too
    step = CompiledStep(run)
    x = run.data.x_train[:64]
    gens = step_generators(0, 0)
    from maelab.data.augment_draws import draw_uniforms
    from maelab.masking import mask_noise
    draws = draw_uniforms(64, run.cfg.aug, 32, gens.augment, "cpu")
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        explained = torch._dynamo.explain(step.eager_update)(run, x, draws, mask_noise(64, 64, "cpu", gens.mask),
                                                             step.visible(16))
    # one graph through augmentation, forward, backward and clipping; one for the fused AdamW update, which
    # torch.optim fences with graph breaks of its own (its no-grad boundary)
    assert explained.graph_count == 2
    for reason in explained.break_reasons:
        assert "torch/optim/optimizer.py" in reason.user_stack[-1].filename, reason.reason


def test_a_mask_schedule_from_0_to_1_and_a_new_lr_each_step_compile_the_step_once_under_bf16_autocast(tmp_path, tiny):
    # ratio 1 keeps K = 1 patch and ratio 0 keeps K = L - 1: the sizes dynamo would specialise if K were backed
    # (compiled first at K = 1, a backed K recompiled at the next K; 3 recompiles over these ratios before). In bf16
    # autocast, what a CUDA run does by default, traced on the CPU with aot_eager
    ratios, extra = [1.0, 0.0, 0.3, 0.6], ["mask.schedule=linear", "train.precision=bf16", "aug.preset=mae"]
    run = build(tmp_path, tiny, *WHOLE_STEP, *extra)
    eager = build(tmp_path, tiny, *extra, name="eager")
    counter, dtypes = CompileCounter(), set()

    def traced(gm, example_inputs):  # the dtypes the traced step computes in: bf16 only under autocast
        dtypes.update(v.dtype for n in gm.graph.nodes if isinstance(v := n.meta.get("example_value"), torch.Tensor))
        return counter(gm, example_inputs)

    step = CompiledStep(run)
    step.update = torch.compile(step.eager_update, backend=traced)
    x = run.data.x_train[:64]
    frames, losses = [], []
    for i, ratio in enumerate(ratios):
        lr = 1e-3 * (i + 1)
        losses.append((step(run, x, lr, ratio, step_generators(0, i)),
                       train_step(eager, x, lr, ratio, step_generators(0, i))))
        frames.append(counter.frame_count)
    assert len(set(frames)) == 1, frames  # compiled at the first step, never again: no recompile for K or the lr
    assert torch.bfloat16 in dtypes  # the autocast region is in the traced step, not only in the eager one
    for compiled, plain in losses:  # every K, 1 and L - 1 included, gives the eager step's loss (bf16: a few ulps)
        assert compiled.dtype == plain.dtype and float(compiled) == pytest.approx(float(plain), rel=1e-2)
    # the weights agree to bf16's rounding (99% of them within 1e-4); a few whose gradient is near 0 can take
    # AdamW's step (|update| <= lr) the other way in one of the two, so none may differ by more than 2 x the lrs
    # (an AVX512-BF16 CPU: 99th percentile 3.4e-5, max 1.02e-2 of the 2.0e-2 allowed)
    diff = (flat_weights(run) - flat_weights(eager)).abs()
    assert torch.quantile(diff, 0.99) < 1e-4 and diff.max() <= 2 * 1e-3 * sum(range(1, len(ratios) + 1))
    before = flat_weights(run)
    step(run, x, 0.0, ratios[0], step_generators(0, 9))
    assert torch.equal(flat_weights(run), before)  # the update reads the lr tensor: lr 0 moves nothing
    assert counter.frame_count == frames[0]


def test_under_cuda_graphs_a_schedule_compiles_once_for_k_from_2_to_l_minus_1_and_once_more_for_k_1(tmp_path, tiny):
    # inductor records no CUDA graph with unbacked sizes: there K is a backed symbol, compiled size-obliviously
    run = build(tmp_path, tiny, *WHOLE_STEP, "mask.schedule=linear")
    counter = CompileCounter()
    step = CompiledStep(run)
    step.k_size = "backed"  # what a CUDA-graph run chooses (run.compile.cuda_graphs; no CUDA here)
    step.update = torch.compile(step.eager_update, backend=counter)
    x = run.data.x_train[:64]
    frames = []
    for i, ratio in enumerate([0.6, 0.0, 0.3, 0.9, 1.0, 0.5, 1.0]):  # K = 26, 63, 45, 6, 1, 32, 1 of 64
        step(run, x, 1e-3, ratio, step_generators(0, i))
        frames.append(counter.frame_count)
    assert len(set(frames[:4])) == 1  # every K >= 2, K = L - 1 included: one graph
    # K = 1: one more on torch 2.13 (a C++ reshape in the backward guards K != 1), none on 2.11.0 (the GPU
    # machines' torch; checked on the CPU with its wheel), then never again
    assert frames[4] - frames[3] == (1 if torch.__version__ >= "2.13" else 0) and frames[-1] == frames[4]


@pytest.mark.slow  # two compiles of the step for one fact: about 15 s
def test_a_constant_ratio_keeps_the_visible_count_a_static_size(tmp_path, tiny):
    # one K for the whole run: compiled for that K (inductor's kernels specialised), a second K recompiles
    run = build(tmp_path, tiny, *WHOLE_STEP)
    counter = CompileCounter()
    step = CompiledStep(run)
    step.update = torch.compile(step.eager_update, backend=counter)
    x = run.data.x_train[:64]
    step(run, x, 1e-3, 0.75, step_generators(0, 0))
    first = counter.frame_count
    step(run, x, 1e-3, 0.75, step_generators(0, 1))
    assert counter.frame_count == first
    step(run, x, 1e-3, 0.5, step_generators(0, 2))
    assert counter.frame_count > first


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


def test_the_whole_step_under_torchrun_is_refused_naming_the_scope_that_works(tiny):
    cfg = load_config(None, [*tiny, *WHOLE_STEP])
    with pytest.raises(UserError, match="train.compile_scope=model"):
        plan_compile(cfg, torch.device("cpu"), "fp32", world_size=2)  # what build_run plans on each of two ranks


def test_a_compile_scope_or_mode_on_a_run_that_compiles_nothing_is_refused_not_ignored(tmp_path, tiny):
    for setting in ("train.compile_scope=step", "train.compile_mode=reduce-overhead"):
        with pytest.raises(UserError, match="has no effect: on the CPU nothing is compiled unless train.compile=true"):
            build(tmp_path, tiny, setting)  # the CPU's default plan: eager
        with pytest.raises(UserError, match="has no effect with train.compile=false"):
            load_config(None, [*tiny, "train.compile=false", setting])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("preset", "draws"), [("none", 0), ("keras", 2), ("mae", 4), ("seed5", 3)])
def test_outside_the_graph_a_step_launches_its_random_draws_and_a_few_more_kernels(tmp_path, tiny, preset, draws):
    from tests.engine.test_epoch_stats import CountOps  # the aten ops dispatched on the host (kernels on a GPU)

    run = build(tmp_path, tiny, *WHOLE_STEP, f"aug.preset={preset}", "mask.schedule=linear")
    step = CompiledStep(run)
    step.update = lambda *args: torch.zeros(())  # what runs in the graph is not counted here
    x = run.data.x_train[:64]
    with CountOps() as seen:
        step(run, x, 1e-3, 0.5, step_generators(0, 1))
    kernels = [op for op in seen.ops if not op.startswith(("profiler.", "aten.slice", "aten.select"))]
    random = [op for op in kernels if op.startswith(("aten.rand", "aten.randint"))]
    # the augmentation's draws (mae: 3 crop uniforms; keras, seed5's base: 1 offsets; the flip; seed5's extras) and
    # the mask noise; then the
    # lr's fill and the stub's zeros (the boxes, flips and extras are computed from the draws inside the graph)
    assert len(random) == draws + 1 and len(kernels) <= len(random) + 2, kernels
