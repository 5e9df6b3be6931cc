"""Power of a claim's test: the smallest effect the seeds run could have seen, and the seeds a margin needs.

Both at 80% power, for the verdict rules of :func:`maelab.ablate.stats.verdict` on a 95% interval with standard
deviation ``sd`` (of the per-seed differences when paired, sqrt(s_a² + s_b²) for Welch) and ``n`` seeds (pairs,
or seeds per side):

- *better* is held when the interval lies above 0, a one-sided t-test at 2.5%. Its power at a true difference δ
  is exact: P(T > t_{0.975, df}) with T noncentral t (df, δ / (sd / √n)) (Cohen 1988, ch. 2; what G*Power
  computes for a paired t-test). The minimum detectable effect (MDE) is the δ at which that power is 80%.
- *same* (within ±margin) is held when the whole interval lies within the margin: two one-sided tests at 2.5%
  each (TOST). With a true difference of 0 the usual approximation (Chow, Shao & Wang, *Sample Size
  Calculations in Clinical Research*, 2008, §3.2) gives 80% power when margin ≥ (t_{0.975, df} + t_{0.90, df})
  · sd / √n: that right-hand side is the MDE, the narrowest margin the seeds could show.

df is n − 1 paired, and 2n − 2 for Welch (equal sizes and spreads: Welch's df at its largest). These use the
spread measured by the seeds run, itself uncertain with few seeds: the figures are estimates, not guarantees.
A spread of 0 (every seed gave the same difference) measures nothing: both are then None (``ZERO_SPREAD``), not
an MDE of 0 or "2 seeds".
"""

from __future__ import annotations

import math
from typing import Optional

from maelab.ablate.stats import PAIRED

POWER, LEVEL = 0.8, 0.95
MAX_SEEDS = 1000  # seeds_needed gives None beyond this
ZERO_SPREAD = "the seeds measured no spread (sd 0), and a power computed from none would be a certainty no seed showed"
BEYOND = f"more than {MAX_SEEDS:,} seeds"


def df_of(n: int, test: str) -> int:
    return n - 1 if test == PAIRED else 2 * n - 2


def power_better(delta: float, sd: float, n: int, test: str = PAIRED, level: float = LEVEL) -> float:
    """Probability that the interval of a *better* claim lies above 0 when the true difference is ``delta``.
    Raises ValueError for sd <= 0 (``ZERO_SPREAD``)."""
    from scipy import stats as sps

    if sd <= 0:
        raise ValueError(f"the power needs a spread > 0, got sd {sd}: {ZERO_SPREAD}")
    df = df_of(n, test)
    critical = sps.t.ppf(0.5 + level / 2, df)
    return float(sps.nct.sf(critical, df, delta / (sd / math.sqrt(n))))


def mde(kind: str, sd: float, n: int, test: str = PAIRED, power: float = POWER,
        level: float = LEVEL) -> Optional[float]:
    """The smallest true difference (*better*) or margin (*same*) that ``n`` seeds detect with ``power``, in the
    metric's units; None for sd 0 (``ZERO_SPREAD``). Raises ValueError for n < 2 or an unknown kind."""
    if n < 2:
        raise ValueError(f"a power needs 2 or more seeds, got {n}")
    return None if sd == 0 else _mde(kind, sd, n, test, power, level)


def _mde(kind: str, sd: float, n: int, test: str, power: float, level: float) -> float:
    """:func:`mde` for sd > 0 and n >= 2."""
    from scipy import stats as sps
    from scipy.optimize import brentq

    se, df = sd / math.sqrt(n), df_of(n, test)
    if kind == "same":
        return float((sps.t.ppf(0.5 + level / 2, df) + sps.t.ppf(0.5 + power / 2, df)) * se)
    if kind == "better":
        high = se * 10
        while power_better(high, sd, n, test, level) < power:
            high *= 2
        return float(brentq(lambda d: power_better(d, sd, n, test, level) - power, 0.0, high, xtol=1e-9 * se))
    raise ValueError(f"unknown claim kind {kind!r}")


def seeds_needed(kind: str, sd: float, effect: float, test: str = PAIRED, power: float = POWER,
                 level: float = LEVEL) -> Optional[int]:
    """The fewest seeds (2 or more) whose MDE is at most ``effect`` (> 0); None beyond ``MAX_SEEDS`` (``BEYOND``)
    and for sd 0 (``ZERO_SPREAD``: no spread, nothing to plan from). Raises ValueError for an effect <= 0."""
    if effect <= 0:
        raise ValueError(f"the effect to detect must be > 0, got {effect}")
    if sd == 0:
        return None
    low, high = 2, MAX_SEEDS
    if _mde(kind, sd, high, test, power, level) > effect:
        return None
    while low < high:  # the MDE falls as seeds are added: bisect for the first n that reaches the effect
        mid = (low + high) // 2
        if _mde(kind, sd, mid, test, power, level) <= effect:
            high = mid
        else:
            low = mid + 1
    return low

