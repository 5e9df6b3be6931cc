"""The report's table cells: "mean ± std" over seeds (counting undefined seeds) and p-values."""

from __future__ import annotations

from typing import Optional

from maelab.ablate.results import Row, undefined_of, values_of
from maelab.ablate.stats import Difference, summarize
from maelab.undefined import DASH


def mean_std(values: list[float], decimals: int, undefined: int = 0) -> str:
    """'mean ± std' of the defined values; "–" when there is none; with ``undefined`` seeds left out, how many:
    "0.612 ± 0.010 (mean over 3 of 5 seeds; 2 undefined)"."""
    s = summarize(values)
    if s.n == 0:
        return DASH
    text = f"{s.mean:.{decimals}f} ± {s.std:.{decimals}f}" if s.n > 1 else f"{s.mean:.{decimals}f}"
    if undefined:
        return f"{text} (mean over {s.n} of {s.n + undefined} seeds; {undefined} undefined)"
    return text if s.n > 1 else f"{text} (1 seed)"


def summary_cell(rows: list[Row], variant: str, metric: str, decimals: int) -> str:
    """:func:`mean_std` of one variant's metric, counting its undefined seeds."""
    return mean_std(values_of(rows, variant, metric), decimals, len(undefined_of(rows, variant, metric)))


def p_value(d: Optional[Difference]) -> str:
    if d is None:
        return DASH
    return f"{DASH} (no spread)" if d.p is None else f"{d.p:.3f}"
