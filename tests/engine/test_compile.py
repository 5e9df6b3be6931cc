"""torch.compile of the MAE: the mask drawn outside the model leaves one graph, and a mask schedule recompiles once."""

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from maelab.config import ModelConfig, load_config
from maelab.engine.run import build_run
from maelab.engine.step import step_generators, train_step
from maelab.errors import UserError
from maelab.masking import draw_mask
from maelab.models import build_mae, resolve_spec

RATIOS = [0.5, 0.6, 0.7, 0.8, 0.9]  # a linear mask schedule's five ratios


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def micro():
    torch.manual_seed(0)
    return build_mae(resolve_spec(ModelConfig(preset="micro")))


def mask_at(ratio, n=4):
    return draw_mask(n, 64, ratio, generator=torch.Generator().manual_seed(0))


def test_the_mae_compiles_as_one_graph_without_a_break():
    explained = torch._dynamo.explain(micro())(torch.randn(4, 3, 32, 32), mask_at(0.75))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_a_mask_schedule_over_five_ratios_recompiles_at_most_once():
    counter = CompileCounter()
    forward = torch.compile(micro(), backend=counter)
    imgs = torch.randn(4, 3, 32, 32)
    for ratio in RATIOS:
        loss, _ = forward(imgs, mask_at(ratio))
        loss.backward()
    assert counter.frame_count <= 2  # the first shape, then one graph with the visible count dynamic


def test_compiled_and_eager_training_give_the_same_losses_over_ten_steps(tmp_path, tiny):
    common = [*tiny, "train.tensorboard=false"]
    runs = {name: build_run(load_config(None, [*common, *extra]), tmp_path / name)
            for name, extra in (("eager", []), ("compiled", ["train.compile=true", "train.compile_backend=aot_eager"]))}
    losses = {}
    for name, run in runs.items():
        x = run.data.x_train[:64]
        losses[name] = [train_step(run, x, 1e-3, RATIOS[i // 2], step_generators(0, i)).item() for i in range(10)]
    assert losses["compiled"][-1] < losses["compiled"][0]  # it trains
    # aot_eager runs the same aten ops as eager, through AOT autograd's traced graphs: equal to float rounding
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-5)


def test_an_unknown_backend_is_refused_naming_the_choices(tiny):
    with pytest.raises(UserError, match="train.compile_backend"):
        load_config(None, [*tiny, "train.compile_backend=tvm"])
