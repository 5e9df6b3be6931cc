"""One rounding per step: Run.mask_ratio rounds the schedule's ratio to whole patches once (a MaskRatio), the step
draws its masks with those counts and the log reads the ratio the encoder sees from the same value."""

import pytest
import torch

import maelab.engine.step as step_module
import maelab.masking as masking
from maelab.config import load_config
from maelab.engine.run import Run, build_run
from maelab.engine.step import step_generators, train_step
from maelab.masking import MaskRatio


@pytest.fixture
def roundings(monkeypatch):
    """Counts the calls of the rounding (num_visible, and its per-sample form)."""
    calls = []
    for name in ("num_visible", "num_visible_per_sample"):
        original = getattr(masking, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(masking, name, counted)
    return calls


@pytest.fixture
def drawn(monkeypatch):
    """The masks the step draws."""
    masks = []

    def draw(*args, **kwargs):
        masks.append(masking.draw_mask(*args, **kwargs))
        return masks[-1]

    monkeypatch.setattr(step_module, "draw_mask", draw)
    return masks


@pytest.mark.parametrize("overrides", [
    ["mask.schedule=linear", "mask.min=0.1", "mask.max=0.9", "optim.epochs=3"],
    ["mask.schedule=random", "mask.per_sample=true", "mask.min=0.2", "mask.max=0.95"],
])
def test_the_step_draws_with_the_ratio_rounded_once(tmp_path, tiny, roundings, drawn, overrides):
    run = build_run(load_config(None, [*tiny, "train.tensorboard=false", *overrides]), tmp_path / "run")
    roundings.clear()  # building the run may time the CPU kernels at a typical ratio
    ratio = run.mask_ratio(1, run.steps_per_epoch + 1)
    # the one rounding of the step (per-sample: one call, which rounds each image's ratio with num_visible)
    per_sample = run.cfg.mask.per_sample
    assert isinstance(ratio, MaskRatio)
    assert roundings == (["num_visible_per_sample"] + ["num_visible"] * run.global_batch if per_sample
                         else ["num_visible"])
    before = len(roundings)
    x = run.data.x_train[:run.rank_batch]
    train_step(run, x, 1e-3, ratio, step_generators(0, run.steps_per_epoch + 1))
    assert len(roundings) == before  # the step draws with the counts as they are: no second rounding
    mask, num_patches = drawn[0], run.model.spec.num_patches
    kept = (1 - mask.binary).sum(1)  # each image's visible patches
    assert kept.tolist() == (ratio.visible.tolist() if per_sample else [ratio.visible] * len(x))
    assert ratio.effective == pytest.approx(float((1 - kept.double() / num_patches).mean()), abs=1e-12)


def test_the_run_has_no_lr_pass_through():
    # the lr is the run's schedule, called as it is (one name for one fact)
    assert "lr" not in vars(Run)


def test_a_rounded_ratio_passes_through_and_draws_the_mask_its_float_draws():
    rounded = masking.round_ratio(64, 0.6)
    assert rounded.visible == 26 and rounded.effective == 1 - 26 / 64 and masking.round_ratio(64, rounded) is rounded
    with pytest.raises(ValueError, match="rounded for 64 patches used with 16"):
        masking.round_ratio(16, rounded)
    assert torch.equal(masking.draw_mask(4, 64, rounded, generator=torch.Generator().manual_seed(2)).binary,
                       masking.draw_mask(4, 64, 0.6, generator=torch.Generator().manual_seed(2)).binary)
    ratios = torch.tensor([0.0, 0.3, 0.75, 1.0], dtype=torch.float64)
    per_sample = masking.round_ratio(64, ratios)
    assert per_sample.visible.tolist() == [63, 45, 16, 1]
    assert per_sample.effective == float(masking.effective_ratios(64, ratios).mean())
