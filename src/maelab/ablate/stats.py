"""Statistics of an ablation: mean ± std over seeds, the paired and Welch 95% intervals of a difference, claim
verdicts."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
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


NO_WIDTH = "zero spread, so the interval has no width and decides nothing"
# a spread at most this fraction of the values' magnitude is float rounding, not spread: accuracies tied to the
# image differ by about 1e-16 of their size after a subtraction (45.4 - 45.2 != 46.2 - 46.0 in floats), while one
# image of a million-image test set is 1e-6 of an accuracy near 100
ROUNDING = 1e-9


def spread(std: Optional[float], *groups: Iterable[float]) -> Optional[float]:
    """``std`` (a sample std of values computed from ``groups``), or 0.0 where it is float rounding: at most
    ``ROUNDING`` times the largest magnitude in ``groups``."""
    scale = max((abs(v) for g in groups for v in g), default=0.0)
    return 0.0 if std is not None and std <= ROUNDING * scale else std


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with its 95% interval, two-sided p-value and degrees of freedom.

    With no spread (every per-seed difference equal, or every value of each side equal) the t statistic is 0 / 0
    or ±inf and the interval has no width: ``low``, ``high``, ``p`` and ``df`` are then None and ``undefined``
    says why (the difference itself is still measured); a verdict on such a difference is inconclusive.
    """

    diff: float
    low: Optional[float]
    high: Optional[float]
    p: Optional[float]
    df: Optional[float]
    undefined: str = ""  # why low, high, p and df are None; "" when they are defined

    @property
    def decides(self) -> bool:
        """Whether the interval is defined (it has spread behind it)."""
        return self.low is not None and self.high is not None


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Optional[Difference]:
    """Welch's unequal-variance t-test of mean(a) - mean(b); None when either side has fewer than 2 values.

    With no spread on either side (standard error 0) the interval, p and df are undefined (None, with the reason:
    scipy's ``ttest_ind`` gives NaN for equal means and p = 0 otherwise, a certainty no seed measured).
    """
    sa, sb = summarize(a), summarize(b)
    if sa.n < 2 or sb.n < 2:
        return None
    diff = sa.mean - sb.mean
    va, vb = spread(sa.std, a, b) ** 2 / sa.n, spread(sb.std, a, b) ** 2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        why = (f"each side gave the same value on every seed ({sa.mean:g} on {sa.n} seeds, {sb.mean:g} on {sb.n}): "
               f"{NO_WIDTH}")
        return Difference(diff, None, None, None, None, why)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    return _t_interval(diff, se, df, level)


def _t_interval(diff: float, se: float, df: float, level: float) -> Difference:
    from scipy import stats as sps  # only the report needs it (a GPU image without scipy can still train)

    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return Difference(diff, diff - half, diff + half, float(2 * sps.t.sf(abs(diff / se), df)), df)


def paired(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> Optional[Difference]:
    """The paired t-interval of mean over common seeds of (a[seed] - b[seed]) (``scipy.stats.ttest_rel``);
    None with fewer than 2 common seeds. No spread in the differences (tied accuracies, say): the interval, p
    and df are undefined, as in :func:`welch`."""
    seeds = sorted(a.keys() & b.keys())
    if len(seeds) < 2:
        return None
    s = summarize([a[k] - b[k] for k in seeds])
    se = spread(s.std, [a[k] for k in seeds], [b[k] for k in seeds]) / math.sqrt(s.n)
    if se == 0.0:
        why = f"the {s.n} seeds gave identical differences ({s.mean:+g} each): {NO_WIDTH}"
        return Difference(s.mean, None, None, None, None, why)
    return _t_interval(s.mean, se, s.n - 1, level)


PAIRED, WELCH = "paired", "Welch"


@dataclass(frozen=True)
class Comparison:
    """variant − reference on one metric over seeds: both intervals, and which one judges.

    ``test`` is PAIRED whenever 2 or more seeds ran on both sides: in a suite seed k gives every variant the same
    initial weights, data order and random draws (common random numbers), so the per-seed difference removes
    what the seed adds to both; the rule is fixed before looking at the data, not "the narrower interval".
    ``sd`` and ``n`` are what the power of :mod:`maelab.ablate.power` needs: the std of the per-seed differences
    and the pairs (paired), or sqrt(s_a² + s_b²) and the seeds per side (Welch). ``welch_sd``: sqrt(s_a² + s_b²)
    in either case (None without 2 values per side), what the power can rest on when the per-seed differences
    have no spread. ``correlation``: Pearson's r of the two sides over common seeds (None below 3 pairs or
    without spread), the reason pairing pays or not.
    """

    paired: Optional[Difference]
    welch: Optional[Difference]
    test: str
    sd: Optional[float]
    n: int
    correlation: Optional[float]
    welch_sd: Optional[float] = None

    @property
    def used(self) -> Optional[Difference]:
        return self.paired if self.test == PAIRED else self.welch


def compare(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> Comparison:
    """:class:`Comparison` of the values ``a`` and ``b`` (seed -> value) of two variants."""
    common = sorted(a.keys() & b.keys())
    w = welch(list(a.values()), list(b.values()), level)
    sa, sb = summarize(list(a.values())), summarize(list(b.values()))
    groups = (a.values(), b.values())
    welch_sd = math.sqrt(spread(sa.std, *groups) ** 2 + spread(sb.std, *groups) ** 2) if w is not None else None
    if len(common) >= 2:
        diffs = spread(summarize([a[k] - b[k] for k in common]).std, *groups)
        return Comparison(paired(a, b, level), w, PAIRED, diffs, len(common), _pearson(a, b, common), welch_sd)
    return Comparison(None, w, WELCH, welch_sd, min(sa.n, sb.n), None, welch_sd)


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
    not held if it excludes 0 and reaches beyond the margin; inconclusive otherwise. No interval (fewer than 2
    seeds a side) or one without spread (``Difference.undefined``) decides nothing: inconclusive.
    """
    if d is None or not d.decides:
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
