import math

import pytest
from scipy import stats as sps

from maelab.ablate.stats import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    PAIRED,
    WELCH,
    Difference,
    compare,
    paired,
    summarize,
    verdict,
    welch,
)


def test_summarize_is_the_mean_and_sample_std():
    s = summarize([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    assert s.n == 8 and s.mean == 5.0
    assert s.std == pytest.approx(math.sqrt(32 / 7))  # squared deviations sum to 32, ddof=1
    one, none = summarize([3.0]), summarize([])
    assert (one.n, one.mean, one.std) == (1, 3.0, None)  # the sample std of one value divides by n - 1 = 0
    assert (none.n, none.mean, none.std) == (0, None, None)  # the mean of no values is undefined, not NaN


def test_welch_equal_sizes_and_variances_by_hand():
    # a=[1,2,3], b=[4,5,6]: variances 1 and 1, se = sqrt(1/3 + 1/3), df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4,
    # t(0.975, 4) = 2.776445 (table), so the interval is -3 ± 2.776445 * 0.816497 = -3 ± 2.266957
    d = welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert d.diff == -3.0
    assert d.df == pytest.approx(4.0)
    assert d.low == pytest.approx(-5.266957, abs=1e-5) and d.high == pytest.approx(-0.733043, abs=1e-5)
    assert d.p == pytest.approx(0.021312, abs=1e-5)  # two-sided p of t = -3.674235 on 4 df


def test_welch_unequal_variances_by_hand_and_against_scipy():
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]
    d = welch(a, b)
    # va = 1/3, vb = 4/3: df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 50/17
    assert d.df == pytest.approx(50 / 17)
    half = sps.t.ppf(0.975, 50 / 17) * math.sqrt(5 / 3)
    assert (d.low, d.high) == pytest.approx((-2 - half, -2 + half))
    assert d.p == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)


def test_welch_needs_two_values_per_side():
    assert welch([1.0], [1.0, 2.0]) is None


@pytest.mark.parametrize(("a", "b", "diff"), [([2.0, 2.0], [1.0, 1.0], 1.0), ([1.5, 1.5, 1.5], [1.5, 1.5], 0.0)])
def test_welch_without_spread_on_either_side_has_no_interval_and_decides_nothing(a, b, diff):
    # scipy: t = +inf and p = 0 for different constants, NaN for equal ones; neither is evidence
    d = welch(a, b)
    assert (d.diff, d.low, d.high, d.p, d.df) == (diff, None, None, None, None) and not d.decides
    assert d.undefined.startswith("each side gave the same value on every seed") and "decides nothing" in d.undefined
    for kind in ("better", "same"):
        assert verdict(kind, d, claimed_gain=0.5, margin=5.0) == INCONCLUSIVE  # was held (same) / held (better)
    one_side = welch([2.0, 2.0], [1.0, 1.5])  # spread on one side is spread: an interval, as before
    assert one_side.decides and one_side.df == pytest.approx(1.0)


def test_identical_paired_differences_have_no_interval_and_are_inconclusive():
    # 2 seeds whose probe accuracies tied (500 test images: one image is 0.2 points): every difference is +0.00
    a, b = {0: 45.2, 1: 46.0}, {0: 45.2, 1: 46.0}
    d = paired(a, b)
    assert (d.diff, d.low, d.high, d.p, d.df) == (0.0, None, None, None, None)
    assert d.undefined == ("the 2 seeds gave identical differences (+0 each): zero spread, so the interval has no "
                           "width and decides nothing")
    assert verdict("same", d, margin=1.0) == INCONCLUSIVE and verdict("better", d) == INCONCLUSIVE
    # one image better on every seed: the float differences (0.19999999999999574, 0.20000000000000284) are equal
    # but for rounding, which is no spread (it gave "held" with p = 1e-28)
    shifted = paired({0: 45.4, 1: 46.2, 2: 44.0}, {0: 45.2, 1: 46.0, 2: 43.8})
    assert not shifted.decides and shifted.diff == pytest.approx(0.2) and verdict("better", shifted) == INCONCLUSIVE
    assert compare({0: 45.4, 1: 46.2, 2: 44.0}, {0: 45.2, 1: 46.0, 2: 43.8}).sd == 0.0
    assert not welch([45.2] * 3, [45.4] * 3).decides  # 3 x 45.2 / 3 need not be 45.2 exactly in floats
    c = compare(a, b)  # the variants themselves vary over seeds: the power can rest on that (Welch's sd)
    assert (c.test, c.sd, c.welch_sd) == (PAIRED, 0.0, pytest.approx(math.sqrt(2 * 0.32)))
    assert c.welch.decides and c.welch.low < 0 < c.welch.high


def diff(low, high):
    return Difference((low + high) / 2, low, high, 0.5, 4.0)


@pytest.mark.parametrize(("kind", "d", "gain", "expected"), [
    ("better", diff(0.5, 2.0), 5.5, HELD),            # above 0 (smaller than claimed, still a gain)
    ("better", diff(-1.0, 3.0), 5.5, NOT_HELD),        # the claimed +5.5 lies above the interval
    ("better", diff(-1.0, 6.0), 5.5, INCONCLUSIVE),    # 0 and +5.5 both inside
    ("better", diff(-2.0, -0.5), None, NOT_HELD),      # below 0, no figure claimed
    ("better", diff(-2.0, 0.5), None, INCONCLUSIVE),
    ("same", diff(-0.4, 0.6), None, HELD),             # within ±1
    ("same", diff(1.5, 3.0), None, NOT_HELD),          # excludes 0 and leaves the margin
    ("same", diff(-0.5, 1.5), None, INCONCLUSIVE),     # contains 0 but too wide to call it the same
    ("same", diff(0.2, 0.8), None, HELD),              # a real but negligible difference
])
def test_verdicts_by_interval(kind, d, gain, expected):
    assert verdict(kind, d, gain, margin=1.0) == expected


def test_no_interval_is_inconclusive():
    assert verdict("better", None, 5.0) == INCONCLUSIVE
    assert verdict("same", None) == INCONCLUSIVE


def test_the_paired_interval_is_the_t_interval_of_the_per_seed_differences_by_hand_and_against_scipy():
    a, b = {0: 50.0, 1: 52.0, 2: 49.0}, {0: 49.0, 1: 50.5, 2: 48.5}
    d = paired(a, b)
    # differences 1.0, 1.5, 0.5: mean 1.0, std 0.5, se 0.5 / sqrt(3) = 0.288675, t(0.975, 2) = 4.302653
    assert d.diff == pytest.approx(1.0) and d.df == 2
    assert (d.low, d.high) == pytest.approx((1.0 - 1.242063, 1.0 + 1.242063), abs=1e-5)
    assert d.p == pytest.approx(sps.ttest_rel([50, 52, 49], [49, 50.5, 48.5]).pvalue)


def test_pairing_uses_only_the_seeds_both_sides_ran():
    d = paired({0: 1.0, 1: 2.0, 2: 9.0}, {0: 0.0, 1: 1.5, 3: 7.0})  # seeds 0 and 1: differences 1.0 and 0.5
    assert d.diff == pytest.approx(0.75) and d.df == 1
    assert paired({0: 1.0}, {0: 2.0, 1: 3.0}) is None


def test_a_comparison_judges_by_the_paired_interval_whenever_two_seeds_pair_and_reports_welch_beside_it():
    # the seeds move both variants together (r near 1): pairing narrows the interval a lot
    a = {0: 50.0, 1: 53.0, 2: 47.0, 3: 51.0}
    b = {k: v - 1.0 + 0.1 * (k % 2) for k, v in a.items()}
    c = compare(a, b)
    assert c.test == PAIRED and c.used is c.paired and c.n == 4
    assert c.correlation == pytest.approx(sps.pearsonr(list(a.values()), list(b.values()))[0])
    assert c.paired.high - c.paired.low < (c.welch.high - c.welch.low) / 10
    assert c.sd == pytest.approx(summarize([a[k] - b[k] for k in a]).std)
    unpaired = compare({0: 1.0, 1: 2.0}, {2: 1.0, 3: 3.0})  # no common seed: Welch judges
    assert unpaired.test == WELCH and unpaired.used is unpaired.welch and unpaired.correlation is None
    assert unpaired.sd == pytest.approx(math.sqrt(0.5 + 2.0))


def test_the_correlation_needs_three_pairs_and_spread_on_both_sides():
    assert compare({0: 1.0, 1: 2.0}, {0: 1.5, 1: 2.5}).correlation is None
    assert compare({0: 1.0, 1: 1.0, 2: 1.0}, {0: 1.5, 1: 2.5, 2: 3.0}).correlation is None
