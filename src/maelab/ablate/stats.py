"""Statistics of an ablation: mean ± std over seeds, the paired and Welch 95% intervals of a difference, claim
verdicts."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

HELD, NOT_HELD, INCONCLUSIVE = "held", "not held", "inconclusive"


@dataclass(frozen=True)
class Summary:
    n: int
    mean: Optional[float]  # None for no values: the mean of an empty set is undefined
    std: Optional[float]  # sample standard deviation (ddof=1); None for fewer than 2 values (it divides by n - 1)


def summarize(values: Sequence[float]) -> Summary:
    """Mean and sample standard deviation of one variant's values over seeds (undefined ones already left out)."""
    n = len(values)
    if n == 0:
        return Summary(0, None, None)
    mean = sum(values) / n
    if n == 1:
        return Summary(1, mean, None)
    return Summary(n, mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)))


NO_SPREAD = "no spread: every seed gives the same value on both sides, so the t statistic is 0 / 0"


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with Welch's 95% interval and two-sided p-value.

    ``p`` and ``df`` are None where they are undefined (``NO_SPREAD``); the interval is always defined.
    """

    diff: float
    low: float
    high: float
    p: Optional[float]
    df: Optional[float]


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Optional[Difference]:
    """Welch's unequal-variance t-test of mean(a) - mean(b); None when either side has fewer than 2 values.

    With no spread on either side (standard error 0) the difference is known exactly: the interval is
    [diff, diff] (its half-width t * 0 is 0 for every df) and df = 0 / 0 is undefined (None); p is 0 when
    diff != 0 (t = ±inf, p = 0 for every df, as scipy's ``ttest_ind``) and None when diff == 0 (t = 0 / 0,
    where scipy returns NaN).
    """
    sa, sb = summarize(a), summarize(b)
    if sa.n < 2 or sb.n < 2:
        return None
    diff = sa.mean - sb.mean
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Difference(diff, diff, diff, None if diff == 0 else 0.0, None)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    return _t_interval(diff, se, df, level)


def _t_interval(diff: float, se: float, df: float, level: float) -> Difference:
    from scipy import stats as sps  # only the report needs it (a GPU image without scipy can still train)

    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return Difference(diff, diff - half, diff + half, float(2 * sps.t.sf(abs(diff / se), df)), df)


def paired(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> Optional[Difference]:
    """The paired t-interval of mean over common seeds of (a[seed] - b[seed]) (``scipy.stats.ttest_rel``);
    None with fewer than 2 common seeds. No spread in the differences: the interval is [diff, diff], df and p
    as in :func:`welch`."""
    seeds = sorted(a.keys() & b.keys())
    if len(seeds) < 2:
        return None
    s = summarize([a[k] - b[k] for k in seeds])
    se = s.std / math.sqrt(s.n)
    if se == 0.0:
        return Difference(s.mean, s.mean, s.mean, None if s.mean == 0 else 0.0, None)
    return _t_interval(s.mean, se, s.n - 1, level)


PAIRED, WELCH = "paired", "Welch"


@dataclass(frozen=True)
class Comparison:
    """variant − reference on one metric over seeds: both intervals, and which one judges.

    ``test`` is PAIRED whenever 2 or more seeds ran on both sides: in a suite seed k gives every variant the same
    initial weights, data order and random draws (common random numbers), so the per-seed difference removes
    what the seed adds to both; the rule is fixed before looking at the data, not "the narrower interval".
    ``sd`` and ``n`` are what the power of :mod:`maelab.ablate.power` needs: the std of the per-seed differences
    and the pairs (paired), or sqrt(s_a² + s_b²) and the seeds per side (Welch). ``correlation``: Pearson's r of
    the two sides over common seeds (None below 3 pairs or without spread), the reason pairing pays or not.
    """

    paired: Optional[Difference]
    welch: Optional[Difference]
    test: str
    sd: Optional[float]
    n: int
    correlation: Optional[float]

    @property
    def used(self) -> Optional[Difference]:
        return self.paired if self.test == PAIRED else self.welch


def compare(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> Comparison:
    """:class:`Comparison` of the values ``a`` and ``b`` (seed -> value) of two variants."""
    common = sorted(a.keys() & b.keys())
    w = welch(list(a.values()), list(b.values()), level)
    if len(common) >= 2:
        diffs = summarize([a[k] - b[k] for k in common])
        return Comparison(paired(a, b, level), w, PAIRED, diffs.std, len(common), _pearson(a, b, common))
    sa, sb = summarize(list(a.values())), summarize(list(b.values()))
    sd = math.sqrt(sa.std**2 + sb.std**2) if w is not None else None
    return Comparison(None, w, WELCH, sd, min(sa.n, sb.n), None)


def _pearson(a: Mapping[int, float], b: Mapping[int, float], seeds: list[int]) -> Optional[float]:
    """Pearson's r of the two variants over ``seeds`` (``statistics.correlation``); None with fewer than 3 seeds or
    a variant that does not vary (r undefined)."""
    if len(seeds) < 3:
        return None
    x, y = [a[k] for k in seeds], [b[k] for k in seeds]
    try:
        return statistics.correlation(x, y)
    except statistics.StatisticsError:  # a constant input: r is undefined
        return None


def verdict(kind: str, d: Optional[Difference], claimed_gain: Optional[float] = None, margin: float = 1.0) -> str:
    """Judge a claim by the interval of (variant - reference).

    ``better``: held if the interval lies above 0; not held if it lies below the claimed gain (or at or below
    0 when no gain is claimed); inconclusive otherwise. ``same``: held if the interval lies within ±margin;
    not held if it excludes 0 and reaches beyond the margin; inconclusive otherwise.
    """
    if d is None:
        return INCONCLUSIVE
    if kind == "better":
        if d.low > 0:
            return HELD
        bar = claimed_gain if claimed_gain is not None and claimed_gain > 0 else 0.0
        return NOT_HELD if (d.high < bar or d.high <= 0) else INCONCLUSIVE
    if kind == "same":
        if -margin <= d.low and d.high <= margin:
            return HELD
        excludes_zero = d.low > 0 or d.high < 0
        return NOT_HELD if excludes_zero and (d.low < -margin or d.high > margin) else INCONCLUSIVE
    raise ValueError(f"unknown claim kind {kind!r}")
