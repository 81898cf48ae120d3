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

Schemes that estimate differently weighted targets are compared on one common reference direction u
(the uniform scheme's mean gradient; for batch b, the mean of the uniform batches other than b, which
share no draw with batch b of any scheme). From K = [g_a . g_b] of the scheme and the cross Gram
X = [g_a . u_c] with the uniform batches u_c:

    projection variance       var_b(g_b . u_{-b} / |u_{-b}|)                            (noise along u)
    cosine to the reference   mean_b cos(g_b, u_{-b})

Quantiles come from scipy.stats; intervals are over independent units (cells, snapshots, seeds).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps


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
        # log a - log b: a / b can underflow to 0 for a tiny a (e.g. a nearly zero mean gradient).
        return math.log(a) - math.log(b) if 0 < a < math.inf and 0 < b < math.inf else math.nan

    full = log_ratio(np.arange(B))
    loo = np.array([log_ratio(np.delete(np.arange(B), b)) for b in range(B)])
    if not np.all(np.isfinite(loo)):
        return full, math.nan
    se = math.sqrt((B - 1) / B * float(((loo - loo.mean()) ** 2).sum()))
    return full, se


def pooled_log_ratio(estimates: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Ratio and 95% interval (exp of mean log ratio +- z(0.975) SE) pooled over cells with equal weight;
    used for a single cell (with several cells the report takes a t-interval over cells).

    The cells (snapshot x prompt set) are independent, so the SE of the mean is
    sqrt(sum se_c^2) / C. The interval covers rollout noise for these cells (prompt sets and
    snapshots are the conditions, not a sample from a population)."""
    logs = np.array([e[0] for e in estimates], dtype=np.float64)
    ses = np.array([e[1] for e in estimates], dtype=np.float64)
    if len(logs) == 0 or not np.all(np.isfinite(logs)) or not np.all(np.isfinite(ses)):
        return math.nan, math.nan, math.nan
    mean = float(logs.mean())
    se = float(math.sqrt((ses**2).sum()) / len(logs))
    z = float(sps.norm.ppf(0.975))
    return math.exp(mean), math.exp(mean - z * se), math.exp(mean + z * se)


def rank(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    return sps.rankdata(np.asarray(x, dtype=np.float64), method="average")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks); NaN for constant input."""
    rx, ry = rank(x), rank(y)
    if len(rx) < 2 or np.all(rx == rx[0]) or np.all(ry == ry[0]):
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Spearman correlation of x and y given z: the partial correlation of the ranks,
    (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)). What x says about y beyond what z says."""
    r_xy, r_xz, r_yz = spearman(x, y), spearman(x, z), spearman(y, z)
    denom = (1.0 - r_xz**2) * (1.0 - r_yz**2)
    if not (math.isfinite(r_xy) and math.isfinite(r_xz) and math.isfinite(r_yz)) or denom <= 0:
        return math.nan
    return float((r_xy - r_xz * r_yz) / math.sqrt(denom))


def reference_measures(K: np.ndarray, X: np.ndarray, K_ref: np.ndarray) -> dict[str, float]:
    """Projection variance and mean cosine of B gradients g_b on a common reference (module docstring).

    K [B, B] = g_a . g_b of the scheme; X [B, B] = g_a . u_c with the reference scheme's batches;
    K_ref [B, B] = u_a . u_c. Batch b is projected on u_{-b}, the mean of the reference batches c != b.
    """
    K, X, K_ref = (np.asarray(m, dtype=np.float64) for m in (K, X, K_ref))
    B = K.shape[0]
    if K.shape != (B, B) or X.shape != (B, B) or K_ref.shape != (B, B) or B < 3:
        raise ValueError(f"need three [B, B] Gram matrices, B >= 3; got {K.shape}, {X.shape}, {K_ref.shape}")
    dots = (X.sum(1) - np.diag(X)) / (B - 1)  # g_b . u_{-b}
    row = K_ref.sum(1)
    ref_sq = (K_ref.sum() - 2 * row + np.diag(K_ref)) / (B - 1) ** 2  # |u_{-b}|^2
    ref_norm = np.sqrt(np.maximum(ref_sq, 1e-300))
    projection = dots / ref_norm
    cos = dots / (ref_norm * np.sqrt(np.maximum(np.diag(K), 1e-300)))
    return {"projection_variance": float(projection.var(ddof=1)), "reference_cosine": float(cos.mean())}


def jackknife_reference_log_ratio(
    K: np.ndarray, X: np.ndarray, K_ref: np.ndarray, measure: str
) -> tuple[float, float]:
    """log(measure(scheme) / measure(reference scheme)) on the common reference, and its paired
    delete-one jackknife standard error (batch b left out of every matrix at once)."""
    B = K.shape[0]

    def log_ratio(keep: np.ndarray) -> float:
        sub = np.ix_(keep, keep)
        a = reference_measures(K[sub], X[sub], K_ref[sub])[measure]
        b = reference_measures(K_ref[sub], K_ref[sub], K_ref[sub])[measure]
        # log a - log b: a / b can underflow to 0 for a tiny a (e.g. a nearly zero mean gradient).
        return math.log(a) - math.log(b) if 0 < a < math.inf and 0 < b < math.inf else math.nan

    full = log_ratio(np.arange(B))
    loo = np.array([log_ratio(np.delete(np.arange(B), b)) for b in range(B)])
    if not np.all(np.isfinite(loo)):
        return full, math.nan
    return full, math.sqrt((B - 1) / B * float(((loo - loo.mean()) ** 2).sum()))


def mean_interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): 95% Student-t interval (scipy.stats.t) over independent replicates; NaN
    bounds for one value."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    half = float(sps.t.ppf(0.975, len(v) - 1)) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return mean, mean - half, mean + half


def cluster_interval(values: list[float], clusters: list) -> tuple[float, float, float, int]:
    """(mean, low, high, units): the values averaged within each cluster first (batches of one
    snapshot share its policy, so they are not independent), then a t-interval over the cluster
    means. One cluster: the t-interval over its values (a statement about that snapshot only)."""
    groups: dict = {}
    for v, c in zip(values, clusters):
        if math.isfinite(v):
            groups.setdefault(c, []).append(v)
    if len(groups) == 1:
        only = next(iter(groups.values()))
        return (*mean_interval(only), len(only))
    return (*mean_interval([float(np.mean(g)) for g in groups.values()]), len(groups))


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


def tail_tokens_needed(
    abs_dh: list[float], changed: list[bool], total: int, quantile: float, resolution: float
) -> tuple[float, float]:
    """(tokens changed in the band, tokens needed) for moving a tail statistic of per-token |dH| down by
    `resolution` (relative, on the log scale) through the tokens a factor rescales.

    abs_dh: the largest |dH| of a batch (no factor), in descending order, `changed[j]` whether the factor
    changes token j's weight (by more than 1%), `total` the batch's token count; the statistic is the max
    (quantile 1) or a quantile with linear interpolation (as torch.quantile), to first order the order
    statistic at the nearest rank r = round(q (T - 1)). It falls below t = value * exp(-resolution) only when
    the tokens at or above t are at most T - 1 - r: the rest (needed, at least one) must move below t, and
    only tokens the factor changes move selectively. NaN when the stored tokens do not reach below t (the
    band is not covered)."""
    values = np.asarray(abs_dh, dtype=np.float64)
    flags = np.asarray(changed, dtype=bool)
    if len(values) == 0 or len(values) != len(flags) or not math.isfinite(resolution):
        return math.nan, math.nan
    position = quantile * (total - 1)
    low, frac = int(math.floor(position)), position - math.floor(position)
    # The statistic from the sorted-descending tail: ascending index i is descending index total - 1 - i.
    desc = total - 1 - low
    if desc >= len(values):
        return math.nan, math.nan
    value = values[desc] if frac == 0 else values[desc] * (1 - frac) + values[desc - 1] * frac
    threshold = value * math.exp(-resolution)
    in_band = values >= threshold
    if in_band.all() and len(values) < total:
        return math.nan, math.nan
    allowed = total - 1 - math.floor(position + 0.5)  # tokens that may stay above the nearest rank
    return float((in_band & flags).sum()), float(max(1, in_band.sum() - allowed))
