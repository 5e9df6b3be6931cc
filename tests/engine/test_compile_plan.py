"""What a run compiles, decided once: the whole step as CUDA graphs on CUDA by default, a fallback that says why,
eager on the CPU, explicit settings kept or refused in one line."""

import pytest
import torch

from maelab.config import load_config
from maelab.engine.compile_plan import CompilePlan, plan_compile
from maelab.engine.pretrain import pretrain, step_function
from maelab.engine.run import build_run, start_notes
from maelab.engine.step import train_step
from maelab.errors import UserError

CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def plan(tiny, *overrides, device=CUDA, precision="bf16", world_size=1):
    return plan_compile(load_config(None, [*tiny, *overrides]), device, precision, world_size)


def test_on_cuda_the_default_is_the_whole_step_replayed_as_cuda_graphs(tiny):
    chosen = plan(tiny)
    assert (chosen.scope, chosen.mode, chosen.cuda_graphs) == ("step", "reduce-overhead", True)
    assert chosen.options() == {"backend": "inductor", "mode": "reduce-overhead"}
    assert "the whole step as CUDA graphs" in chosen.note and "train.compile=false" in chosen.note


def test_on_the_cpu_the_default_is_eager_and_says_nothing(tiny):
    chosen = plan(tiny, device=CPU, precision="fp32")
    assert chosen.scope is None and chosen.note is None


@pytest.mark.parametrize("setting", ["gan.enabled=true", "optim.accum_steps=2", "train.on_nan=skip",
                                     "mask.per_sample=true"])
def test_a_config_the_whole_step_cannot_hold_falls_back_to_the_models_compile_naming_the_setting(tiny, setting):
    chosen = plan(tiny, setting, *(["mask.schedule=random"] if setting.startswith("mask.") else []))
    assert (chosen.scope, chosen.mode, chosen.cuda_graphs) == ("model", "default", False)
    assert "the model's forward, not the whole step" in chosen.note and setting in chosen.note


def test_torchrun_and_a_card_without_bf16_fall_back_and_say_so(tiny):
    assert "2 under torchrun" in plan(tiny, world_size=2).note
    old_card = plan(tiny, precision="fp16")  # train.precision=auto resolved to fp16 on a pre-Ampere card
    assert old_card.scope == "model" and "fp16 (this card has no bf16" in old_card.note


def test_train_compile_false_turns_compiling_off_on_cuda(tiny):
    chosen = plan(tiny, "train.compile=false")
    assert chosen.scope is None and "train.compile=false" in chosen.note


def test_explicit_settings_are_kept(tiny):
    assert plan(tiny, "train.compile=true", device=CPU).scope == "model"  # the CPU's compile, as before
    step = plan(tiny, "train.compile=true", "train.compile_scope=step", "train.compile_mode=default")
    assert (step.scope, step.cuda_graphs, step.note) == ("step", False, None)
    cpu_step = plan(tiny, "train.compile=true", "train.compile_scope=step", device=CPU)
    assert (cpu_step.scope, cpu_step.mode, cpu_step.cuda_graphs) == ("step", "default", False)


@pytest.mark.parametrize(("module", "feature"), [("torch._dynamo.config", "trace_autograd_ops"),
                                                 ("torch._dynamo.decorators", "mark_unbacked"),
                                                 ("torch.fx.experimental._config", "backed_size_oblivious")])
def test_a_torch_that_cannot_trace_the_step_is_refused_in_one_line_or_skipped_by_the_default(tiny, monkeypatch,
                                                                                             module, feature):
    import importlib

    monkeypatch.delattr(importlib.import_module(module), feature, raising=False)
    with pytest.raises(UserError, match=rf"{feature} .*torch >= 2\.11.*train\.compile_scope=model"):
        plan(tiny, "train.compile=true", "train.compile_scope=step")
    assert feature in plan(tiny).note and plan(tiny).scope == "model"


def test_the_run_holds_its_plan_and_trains_with_the_step_it_names(tmp_path, tiny):
    run = build_run(load_config(None, [*tiny, "train.tensorboard=false", "optim.epochs=125"]),  # 500 steps: not short
                    tmp_path / "run")
    assert run.compile.scope is None and step_function(run) is train_step and start_notes(run) == []


def test_the_plans_note_is_printed_once_when_the_run_starts(tmp_path, tiny, monkeypatch, capsys):
    # the plan as a CUDA run would get it (the model's compile, traced by aot_eager here in seconds)
    note = "compile: the model's forward, not the whole step: it cannot hold gan.enabled=true"
    monkeypatch.setattr("maelab.engine.run.plan_compile",
                        lambda *a, **k: CompilePlan(scope="model", backend="aot_eager", note=note))
    pretrain(load_config(None, [*tiny, "train.tensorboard=false", "optim.epochs=1", f"out_dir={tmp_path / 'run'}"]))
    assert capsys.readouterr().err.count(f"maelab: {note}\n") == 1


def test_a_card_without_bf16_refuses_an_explicit_whole_step_naming_the_precision_that_works(tiny):
    with pytest.raises(UserError, match=r"cannot hold fp16 .*use train.precision=fp32, or train.compile_scope=model"):
        plan(tiny, "train.compile=true", "train.compile_scope=step", precision="fp16")


def test_on_cuda_a_scope_alone_is_kept_and_the_cudagraphs_backend_counts_as_cuda_graphs(tiny):
    assert plan(tiny, "train.compile_scope=model").scope == "model"  # compiling is on by default on CUDA
    graphs = plan(tiny, "train.compile_backend=cudagraphs")
    assert (graphs.scope, graphs.cuda_graphs, graphs.options()) == ("step", True, {"backend": "cudagraphs"})


def test_a_run_config_written_before_the_compile_plan_still_loads(tiny):
    # config.yaml and checkpoints of earlier runs hold the old defaults: compile false, scope model, mode default
    old = load_config(None, [*tiny, "train.compile=false", "train.compile_scope=model", "train.compile_mode=default"])
    assert (old.train.compile_scope, old.train.compile_mode) == (None, None)
    assert plan_compile(old, CPU, "fp32").scope is None


def test_a_run_written_with_the_old_compile_defaults_resumes_and_evaluates(tmp_path, tiny):
    # what dc620a4 wrote into every run's config.yaml and checkpoints (it refused to resume there: issue 27 review)
    from maelab.engine.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
    from maelab.engine.loading import load_run
    from maelab.engine.pretrain import resume
    run_dir = pretrain(load_config(None, [*tiny, "train.tensorboard=false", "optim.epochs=2",
                                          "train.stop_after_epochs=1", f"out_dir={tmp_path / 'old'}"]))
    state = load_checkpoint(checkpoint_path(run_dir))
    state["config"]["train"].update(compile=False, compile_scope="model", compile_mode="default")
    save_checkpoint(state, checkpoint_path(run_dir))
    assert load_run(run_dir).step == 4
    resume(run_dir, [])
    assert load_checkpoint(checkpoint_path(run_dir))["step"] == 8
