"""Pure statistics of the mechanism probes: gradient-noise measures from a Gram matrix, rank
correlation, intervals and verdicts. No torch, no I/O.

Gradient measures of one allocation scheme come from B independent rollout batches, each giving
a flattened policy gradient g_b. Everything is a function of the Gram matrix K = [g_a . g_b],
so the [B, D] gradients never have to be kept, and the delete-one jackknife is cheap:

    trace of the covariance   tr(C) = (sum_b ||g_b||^2 - B ||g_mean||^2) / (B - 1)       (unbiased)
    squared norm of the mean  ||E g||^2 ~ sum_{a != b} g_a . g_b / (B (B - 1))          (unbiased)
    relative noise            tr(C) / ||E g||^2                                         (noise-to-signal)
    mean cosine               mean_b cos(g_b, mean of the other B - 1 batches)          (leave-one-out,
                              so a batch is never compared with itself)
"""

from __future__ import annotations

import math

import numpy as np

Z975 = 1.959964  # two-sided 95% normal quantile


def gradient_measures(K: np.ndarray) -> dict[str, float]:
    """trace, mean_norm, relative_noise, cosine from the Gram matrix K [B, B] of B gradients."""
    K = np.asarray(K, dtype=np.float64)
    B = K.shape[0]
    if K.shape != (B, B) or B < 3:
        raise ValueError(f"need a square Gram matrix of at least 3 gradients, got shape {K.shape}")
    total = K.sum()
    diag = np.diag(K)
    mean_sq = total / B**2
    trace = (diag.sum() - B * mean_sq) / (B - 1)
    signal_sq = (total - diag.sum()) / (B * (B - 1))
    row = K.sum(1)
    dots = (row - diag) / (B - 1)  # g_b . mean of the others
    others_sq = (total - 2 * row + diag) / (B - 1) ** 2  # ||mean of the others||^2
    cos = dots / np.sqrt(np.maximum(diag * others_sq, 1e-300))
    return {
        "trace": float(trace),
        "mean_norm": float(math.sqrt(max(signal_sq, 0.0))),
        "relative_noise": float(trace / signal_sq) if signal_sq > 0 else math.inf,
        "cosine": float(cos.mean()),
    }


def jackknife_log_ratio(K_scheme: np.ndarray, K_base: np.ndarray, measure: str) -> tuple[float, float]:
    """(log(measure(scheme) / measure(base)), its delete-one jackknife standard error).

    The two Gram matrices index the same B batches (batch b of every scheme reuses the same
    random draws where it can), so batch b is left out of both at once: a paired jackknife.
    """
    B = K_base.shape[0]

    def log_ratio(keep: np.ndarray) -> float:
        a = gradient_measures(K_scheme[np.ix_(keep, keep)])[measure]
        b = gradient_measures(K_base[np.ix_(keep, keep)])[measure]
        return math.log(a / b) if a > 0 and b > 0 and math.isfinite(a / b) else math.nan

    full = log_ratio(np.arange(B))
    loo = np.array([log_ratio(np.delete(np.arange(B), b)) for b in range(B)])
    if not np.all(np.isfinite(loo)):
        return full, math.nan
    se = math.sqrt((B - 1) / B * float(((loo - loo.mean()) ** 2).sum()))
    return full, se


def pooled_log_ratio(estimates: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Ratio and 95% interval (exp of mean log ratio +- 1.96 SE) pooled over cells with equal weight.

    The cells (snapshot x prompt set) are independent, so the SE of the mean is
    sqrt(sum se_c^2) / C. The interval covers rollout noise for these cells (prompt sets and
    snapshots are the conditions, not a sample from a population)."""
    logs = np.array([e[0] for e in estimates], dtype=np.float64)
    ses = np.array([e[1] for e in estimates], dtype=np.float64)
    if len(logs) == 0 or not np.all(np.isfinite(logs)) or not np.all(np.isfinite(ses)):
        return math.nan, math.nan, math.nan
    mean = float(logs.mean())
    se = float(math.sqrt((ses**2).sum()) / len(logs))
    return math.exp(mean), math.exp(mean - Z975 * se), math.exp(mean + Z975 * se)


def rank(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks); NaN for constant input."""
    rx, ry = rank(x), rank(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else math.nan


_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): 95% Student-t interval over independent replicates; NaN bounds for one value."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    t = _T975.get(len(v) - 1, 2.0 if len(v) <= 30 else Z975)
    half = t * float(v.std(ddof=1)) / math.sqrt(len(v))
    return mean, mean - half, mean + half


def verdict(low: float, high: float, *, supports_if: str, null: float) -> str:
    """'supports' when the interval lies on the claimed side of `null`, 'contradicts' when it lies
    on the other side, else 'not distinguishable'. supports_if: 'below' or 'above'."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "not distinguishable"
    if supports_if not in ("below", "above"):
        raise ValueError(f"supports_if must be 'below' or 'above', got {supports_if!r}")
    below, above = high < null, low > null
    if (below and supports_if == "below") or (above and supports_if == "above"):
        return "supports"
    if below or above:
        return "contradicts"
    return "not distinguishable"
