import numpy as np
import two_stage_error

from maelab.ablate.power import seeds_needed


def test_the_simulated_plan_is_the_ablation_plan():
    sds = np.array([0.05, 0.3, 0.6, 1.0, 5.0])
    planned = two_stage_error.planned_seeds(sds, effect=1.0, kind="better", cap=10)
    expected = [min(10, max(3, seeds_needed("better", float(sd), 1.0) or 10)) for sd in sds]
    assert planned.tolist() == expected


def test_with_no_effect_a_better_claim_is_rarely_held_and_with_a_small_spread_almost_always():
    false = two_stage_error.rate("better", delta=0.0, sigma=0.25, effect=1.0, cap=10, reps=4000, seed=0)
    power = two_stage_error.rate("better", delta=1.0, sigma=0.25, effect=1.0, cap=10, reps=4000, seed=0)
    assert 0.01 < false["held"] < 0.04 and power["held"] > 0.95
