"""Issue 31: a linear, cosine or step mask schedule reaches mask.max at the last epoch (step); where a run is too
short for that, the run says so once, at its start."""

import pytest

from maelab.config import MaskConfig, load_config
from maelab.engine.run import build_run, start_notes
from maelab.schedules import mask_schedule_warning
from maelab.viz.run_figures import schedule_series


@pytest.mark.parametrize("overrides,epochs,steps_per_epoch,warning", [
    ({"schedule": "linear", "min": 0.5, "max": 0.9}, 1, 10, "mask.schedule=linear over 1 epoch never reaches "
     "mask.max=0.9 (its last epoch trains at 0.5): use mask.granularity=step (a new ratio every step) or more epochs"),
    ({"schedule": "cosine", "granularity": "step"}, 1, 1, "over 1 step never reaches mask.max=1.0 (its last step "
     "trains at 0): use more steps"),
    ({"schedule": "step", "steps": 4}, 3, 10, "step over 3 epochs never reaches mask.max=1.0 (its last epoch trains "
     "at 0.666667)"),
    ({"schedule": "linear"}, 2, 10, None), ({"schedule": "step", "steps": 4}, 4, 10, None),
    ({"schedule": "random"}, 1, 1, None), ({"schedule": "constant"}, 1, 1, None),
])
def test_a_schedule_that_cannot_reach_its_max_is_said_once_at_the_start(overrides, epochs, steps_per_epoch,
                                                                        warning):
    said = mask_schedule_warning(MaskConfig(**overrides), epochs, steps_per_epoch)
    assert said is None if warning is None else warning in said


def test_a_one_epoch_linear_run_says_it_stays_at_min_and_a_longer_one_trains_its_last_epoch_at_max(tmp_path, tiny):
    short = build_run(load_config(None, [*tiny, "optim.epochs=1", "mask.schedule=linear", "mask.min=0.5",
                                         "mask.max=0.9", "train.tensorboard=false"]), tmp_path / "short")
    assert sum("never reaches mask.max=0.9" in note for note in start_notes(short)) == 1
    cfg = load_config(None, [*tiny, "optim.epochs=3", "mask.schedule=linear", "mask.min=0.5", "mask.max=0.9"])
    run = build_run(cfg, tmp_path / "run")
    assert not any("mask.max" in note for note in start_notes(run))
    last = run.total_steps - 1
    seen = run.mask_ratio(last // run.steps_per_epoch, last)
    assert seen.visible == 6  # round(64 * (1 - 0.9)): the last epoch at 0.9, not the report's 0.767
    assert schedule_series(cfg, len(run.data.x_train), 64).requested[-1] == pytest.approx(0.9)  # and the figure
