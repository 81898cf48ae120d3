"""Interval and power arithmetic for the results tables, on top of scipy.stats.

Pure functions of lists of per-seed numbers; docs/STATISTICS.md explains each formula and
when to read which. Every quantile comes from scipy.stats (no hand-typed tables), so any
number of seeds works.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy import stats as _st

LEVEL = 0.95  # two-sided confidence level of every interval in the tables
POWER = 0.80  # power at which the minimum detectable effect is stated


def t_quantile(df: float, level: float = LEVEL) -> float:
    """Two-sided Student-t critical value t_{(1 + level) / 2, df}, from scipy.stats.t."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    return float(_st.t.ppf(0.5 + level / 2, df))


def mean_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """(mean, half-width of the t-interval of the mean); the half-width is NaN for a single value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, t_quantile(len(values) - 1, level) * statistics.stdev(values) / math.sqrt(len(values))


def paired_difference_ci(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Mean of the per-seed differences a[i] - b[i] and the half-width of its t-interval (df = m - 1).

    For runs that share a seed (same start model, prompt order and evaluation sampling), the
    seed-to-seed variation common to both methods cancels in a[i] - b[i].
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    return mean_ci([x - y for x, y in zip(a, b)], level)


def welch_difference_ci(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Mean difference a - b and the half-width of Welch's interval (Welch-Satterthwaite df)."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se2 = va + vb
    if se2 == 0.0:
        return diff, 0.0
    df = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return diff, t_quantile(df, level) * math.sqrt(se2)


def verdict(diff: float, half_width: float) -> str:
    """'higher'/'lower' only when the interval of the difference excludes zero."""
    if math.isnan(half_width):
        return "single seed: no spread"
    if abs(diff) <= half_width:
        return "within seed spread"
    return "higher" if diff > 0 else "lower"


def minimum_detectable_effect(
    sd: float, seeds: int, *, paired: bool = True, level: float = LEVEL, power: float = POWER
) -> float:
    """Smallest true difference that a two-sided test at `level` detects with probability `power`.

    MDE = (t_{(1+level)/2, df} + t_{power, df}) * SE, with SE = sd / sqrt(m), df = m - 1 for m
    paired seeds (sd: spread of the per-seed differences), or SE = sd * sqrt(2 / m), df = 2m - 2
    for two independent groups of m seeds (sd: spread of one method's seeds). NaN below 2 seeds.
    """
    df = seeds - 1 if paired else 2 * seeds - 2
    if seeds < 2 or df < 1 or math.isnan(sd):
        return math.nan
    se = sd / math.sqrt(seeds) if paired else sd * math.sqrt(2.0 / seeds)
    return (t_quantile(df, level) + float(_st.t.ppf(power, df))) * se


def sampling_mde(
    pass_at_1: Sequence[float],
    problems: Sequence[int],
    samples: Sequence[int],
    seeds: int,
    *,
    level: float = LEVEL,
    power: float = POWER,
) -> float:
    """The part of the MDE of an average Pass@1 difference that finite evaluation alone causes.

    Per benchmark b (mean Pass@1 p_b, N_b problems, n_b samples each), the sampling variance of
    one run's score is at most p_b (1 - p_b) / (N_b n_b) (Jensen, for a fixed problem set); the
    average over B benchmarks divides the sum by B^2, a difference of two runs doubles it and m
    seeds divide it by m. Normal quantiles, since this variance is not estimated from seeds.
    """
    terms = [p * (1 - p) / (n_prob * n_samp) for p, n_prob, n_samp in zip(pass_at_1, problems, samples)]
    if not terms or seeds < 1:
        return math.nan
    var_avg = sum(terms) / len(terms) ** 2
    z = float(_st.norm.ppf(0.5 + level / 2) + _st.norm.ppf(power))
    return z * math.sqrt(2.0 * var_avg / seeds)
