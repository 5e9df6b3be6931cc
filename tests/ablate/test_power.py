import math

import pytest

from maelab.ablate.power import mde, power_better, seeds_needed
from maelab.ablate.stats import WELCH


@pytest.mark.parametrize(("effect", "seeds", "power"), [(0.5, 34, 0.8078), (0.8, 15, 0.8213), (1.0, 10, 0.8031)])
def test_seeds_for_a_better_claim_match_the_textbook_paired_t_test(effect, seeds, power):
    # G*Power 3, "t tests - means: difference from constant (one sample / matched pairs)", two tails, alpha 0.05,
    # power 0.80, effect size dz: total sample sizes 34, 15, 10 with actual powers 0.8078, 0.8213, 0.8031
    assert seeds_needed("better", sd=1.0, effect=effect) == seeds
    assert power_better(effect, 1.0, seeds) == pytest.approx(power, abs=5e-4)
    assert power_better(effect, 1.0, seeds - 1) < 0.8


def test_the_mde_of_a_better_claim_is_the_effect_seen_with_80_percent_power_and_scales_with_the_spread():
    d = mde("better", sd=2.0, n=5)
    assert power_better(d, 2.0, 5) == pytest.approx(0.8, abs=1e-6)
    assert d == pytest.approx(2 * mde("better", sd=1.0, n=5))
    # the normal-theory shortcut (t_0.975,4 + t_0.80,4) * sd / sqrt(n) = (2.776445 + 0.940965) * 2 / sqrt(5) = 3.3250
    # underestimates it a little at 4 df
    assert 3.3250 < d < 3.3250 * 1.05


def test_the_mde_of_a_same_claim_is_the_tost_margin_by_hand():
    # (t_0.975,4 + t_0.90,4) * sd / sqrt(n) = (2.776445 + 1.533206) * 1 / sqrt(5) = 1.927335
    assert mde("same", sd=1.0, n=5) == pytest.approx(1.927335, abs=1e-5)
    # Welch with 5 seeds per side: df 8, (2.306004 + 1.396815) * sqrt(1 + 1) / sqrt(5)
    assert mde("same", sd=math.sqrt(2), n=5, test=WELCH) == pytest.approx(3.702819 * math.sqrt(2 / 5), abs=1e-5)


def test_seeds_needed_is_the_fewest_whose_mde_reaches_the_effect():
    n = seeds_needed("same", sd=1.5, effect=1.0)
    assert mde("same", 1.5, n) <= 1.0 < mde("same", 1.5, n - 1)
    assert seeds_needed("better", sd=100.0, effect=0.01) is None  # beyond a thousand seeds


def test_power_needs_two_seeds_and_a_positive_effect():
    with pytest.raises(ValueError, match="2 or more seeds"):
        mde("better", 1.0, 1)
    with pytest.raises(ValueError, match="must be > 0"):
        seeds_needed("better", 1.0, 0.0)


def test_no_spread_gives_no_mde_and_no_seeds_not_zero_and_two():
    # an sd of 0 (every seed gave the same difference) measured nothing: not "±0.00" and "2 seeds"
    assert mde("better", sd=0.0, n=2) is None and mde("same", sd=0.0, n=5, test=WELCH) is None
    assert seeds_needed("better", sd=0.0, effect=0.1) is None and seeds_needed("same", sd=0.0, effect=1.0) is None
    with pytest.raises(ValueError, match="spread > 0"):
        power_better(1.0, 0.0, 3)
