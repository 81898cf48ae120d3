"""Rollout allocation across the N prompts of a batch: uniform, or DynaMO's variance-minimising one.

DynaMO (docs/METHODS.md sec. 1) chooses integer counts n_i to

    minimise  sum_i w_i^2 / n_i   subject to  sum_i n_i = B,  n_low <= n_i <= n_high,

whose real-valued solution is n_i proportional to w_i, clipped to the bounds (water-filling).

Departures from the textbook / the paper, all deliberate:
- Integer counts are the *exact* integer minimiser, not water-filling followed by
  largest-remainder rounding (the paper's recipe), which can miss the integer optimum. The
  objective is separable and convex in each n_i, so handing out units one at a time by largest
  marginal gain w_i^2 / (n_i (n_i + 1)) is optimal; ties go to the smaller current n_i, then the
  smaller index, which makes equal (or all-zero) weights give exactly `uniform_allocation`.
- Default weight w_i = P_i, the Bernoulli variance (paper and released code, which call it a
  proxy for sigma_i, so n_i ~ P_i). `weight="sqrt_p"` uses w_i = sqrt(P_i), the Bernoulli std:
  that is Neyman allocation and minimises the actual variance sum_i P_i / n_i.
- Cold start: a prompt with fewer than `min_history` past responses gets the largest weight
  p(1-p) can take (0.25, or 0.5 for sqrt_p), i.e. an exploration share; at the first step every
  prompt is cold, so the first allocation is uniform. (The released code instead keeps epoch 1
  uniform and recomputes priorities at epoch ends; the unbiased P_i can exceed 0.25 for small
  G_i, so a cold prompt is not always the heaviest.)
- The released code's mastery floor (accuracy >= 0.85 -> weight 0.01, and every weight >= 0.01)
  is available through `mastery_threshold` / `weight_floor` and is off by default.
"""

from __future__ import annotations

import operator
import struct
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from dynamo.spec import AllocationSpec

# Largest value of p(1 - p) and of its square root: the cold-start weight.
COLD_WEIGHT = {"p": 0.25, "sqrt_p": 0.5}


def _as_count_array(x: object, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold whole numbers, got {arr[:10].tolist()}...")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise ValueError(f"{name} must be >= 0, got {arr[arr < 0][:10].tolist()}")
    return arr


def bernoulli_variance(k: np.ndarray, G: np.ndarray) -> np.ndarray:
    """P_i = k_i (G_i - k_i) / (G_i (G_i - 1)), and 0 where G_i < 2.

    The unbiased estimate of p_i (1 - p_i) from k_i successes in G_i attempts; always-solved and
    never-solved prompts get 0 (their groups carry no GRPO signal).
    """
    k, G = _as_count_array(k, "k"), _as_count_array(G, "G")
    if k.shape != G.shape:
        raise ValueError(f"k and G must have the same shape, got {k.shape} and {G.shape}")
    if (k > G).any():
        bad = np.flatnonzero(k > G)[:10]
        raise ValueError(f"successes exceed attempts at {bad.tolist()}: k={k[bad].tolist()}, G={G[bad].tolist()}")
    kf, Gf = k.astype(np.float64), G.astype(np.float64)
    out = np.zeros(k.shape, dtype=np.float64)
    np.divide(kf * (Gf - kf), Gf * (Gf - 1.0), out=out, where=G >= 2)
    return out


def allocation_weights(
    k: np.ndarray,
    G: np.ndarray,
    *,
    weight: Literal["p", "sqrt_p"] = "p",
    min_history: int = 4,
    mastery_threshold: float | None = None,
    weight_floor: float = 0.0,
    cold_start: Literal["explore", "n_low"] = "explore",
) -> np.ndarray:
    """Allocation weights w_i from the history (k_i successes, G_i attempts).

        w_i = P_i (weight="p") or sqrt(P_i) (weight="sqrt_p"),   P_i = bernoulli_variance(k, G)
        w_i = weight_floor                if mastery_threshold is set and k_i / G_i >= mastery_threshold
        w_i = max(w_i, weight_floor)
        w_i = max(COLD_WEIGHT[weight], weight_floor)   if G_i < min_history  (cold start)

    Cold start wins over mastery: too little history to trust either P_i or the accuracy.
    cold_start="n_low" (released code) gives cold prompts `weight_floor` instead, so they get
    the fewest rollouts while warm prompts have weight.
    """
    if cold_start not in ("explore", "n_low"):
        raise ValueError(f"cold_start must be 'explore' or 'n_low', got {cold_start!r}")
    if weight not in COLD_WEIGHT:
        raise ValueError(f"weight must be one of {sorted(COLD_WEIGHT)}, got {weight!r}")
    if not (np.isfinite(weight_floor) and weight_floor >= 0):
        raise ValueError(f"weight_floor must be finite and >= 0, got {weight_floor!r}")
    if mastery_threshold is not None and not 0.0 <= mastery_threshold <= 1.0:
        raise ValueError(f"mastery_threshold must be in [0, 1] or None, got {mastery_threshold!r}")
    min_history = operator.index(min_history)
    p = bernoulli_variance(k, G)
    G = np.asarray(G, dtype=np.int64)
    w = p if weight == "p" else np.sqrt(p)
    if mastery_threshold is not None:
        accuracy = np.divide(np.asarray(k, dtype=np.float64), G, out=np.zeros_like(w), where=G > 0)
        w = np.where((G > 0) & (accuracy >= mastery_threshold), weight_floor, w)
    w = np.maximum(w, weight_floor)
    cold = max(COLD_WEIGHT[weight], weight_floor) if cold_start == "explore" else weight_floor
    return np.where(G < min_history, cold, w)


def uniform_allocation(num_prompts: int, budget: int) -> np.ndarray:
    """n_i = floor(B / N), plus one for the first B mod N prompts (the lowest indices)."""
    num_prompts, budget = operator.index(num_prompts), operator.index(budget)
    if num_prompts < 0 or budget < 0:
        raise ValueError(f"need num_prompts >= 0 and budget >= 0, got {num_prompts} and {budget}")
    if num_prompts == 0:
        if budget:
            raise ValueError(f"budget {budget} cannot be spread over 0 prompts")
        return np.zeros(0, dtype=np.int64)
    counts = np.full(num_prompts, budget // num_prompts, dtype=np.int64)
    counts[: budget % num_prompts] += 1
    return counts


def check_allocation_feasible(num_prompts: int, budget: int, n_low: int, n_high: int, min_group: int = 2) -> None:
    """Raise ValueError unless min_group <= n_low <= n_high and N * n_low <= B <= N * n_high.

    min_group = 2 because a group-normalised advantage needs at least two responses per prompt
    (a singleton group has no spread, so its samples would be wasted).
    """
    num_prompts, budget = operator.index(num_prompts), operator.index(budget)
    n_low, n_high, min_group = operator.index(n_low), operator.index(n_high), operator.index(min_group)
    if num_prompts < 0 or budget < 0:
        raise ValueError(f"need num_prompts >= 0 and budget >= 0, got num_prompts={num_prompts}, budget={budget}")
    if n_low < min_group:
        raise ValueError(f"n_low={n_low} < {min_group}: every prompt needs at least {min_group} responses")
    if n_high < n_low:
        raise ValueError(f"n_high={n_high} < n_low={n_low}")
    if num_prompts * n_low > budget:
        raise ValueError(
            f"infeasible allocation: num_prompts * n_low = {num_prompts} * {n_low} = {num_prompts * n_low} "
            f"> budget {budget}"
        )
    if num_prompts * n_high < budget:
        raise ValueError(
            f"infeasible allocation: num_prompts * n_high = {num_prompts} * {n_high} = {num_prompts * n_high} "
            f"< budget {budget}"
        )


def allocate_rollouts(weights: np.ndarray, budget: int, n_low: int, n_high: int) -> np.ndarray:
    """Exact integer minimiser of sum_i w_i^2 / n_i s.t. sum_i n_i = B and n_low <= n_i <= n_high.

    Equal to the greedy that starts from n_i = n_low and gives each of the B - N n_low remaining
    units to the prompt with the largest marginal gain w_i^2 / (n_i (n_i + 1)), ties to the
    smaller n_i, then the smaller index. The greedy takes the B - N n_low best units in that
    order, so instead of a heap loop we find the gain threshold by bisection (a count per
    threshold costs one searchsorted per level), order only the few units near it, and verify the
    result with the greedy's optimality condition (worst unit taken beats best unit left).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"weights must be 1-D, got shape {w.shape}")
    if np.isnan(w).any():
        raise ValueError(f"weights contain NaN at {np.flatnonzero(np.isnan(w))[:10].tolist()}")
    if (w < 0).any():
        raise ValueError(f"weights must be >= 0, got negative values at {np.flatnonzero(w < 0)[:10].tolist()}")
    budget, n_low, n_high = operator.index(budget), operator.index(n_low), operator.index(n_high)
    # n_i >= 1 keeps the objective finite; engines check min_group=2 for group-normalised advantages.
    check_allocation_feasible(w.size, budget, n_low, n_high, min_group=1)
    w2 = w * w
    if not np.isfinite(w2).all():
        raise ValueError("weights must be finite with a finite square (|w| < 1e154)")
    num = w.size
    extra = budget - num * n_low  # units to hand out above n_low
    if extra == 0 or extra == num * (n_high - n_low):
        return np.full(num, n_low if extra == 0 else n_high, dtype=np.int64)

    counts = _fast_allocation(w2, extra, n_low, n_high)
    if counts is None or not _is_greedy_optimal(counts, w2, n_low, n_high):
        # Never expected; kept so that the result is exact whatever floating-point corner we hit.
        lo, hi = np.full(num, n_low, dtype=np.int64), np.full(num, n_high, dtype=np.int64)
        counts = _take_best_units(w2, lo, hi, extra)
    return counts


# -- internals of allocate_rollouts ----------------------------------------------------------------


def _fast_allocation(w2: np.ndarray, extra: int, n_low: int, n_high: int) -> np.ndarray | None:
    """Greedy counts via a threshold search, or None if the bracket came out inconsistent."""
    num = w2.size
    levels = np.arange(n_low, n_high, dtype=np.float64)
    denom = levels * (levels + 1.0)  # gain of unit m (taken when n_i = m) is w_i^2 / denom[m]
    sorted_w2 = np.sort(w2)
    total_units = num * levels.size

    def units_above(t: float) -> int:
        # Units with w_i^2 > t * m (m + 1): per level, a suffix of the sorted squared weights.
        return total_units - int(np.searchsorted(sorted_w2, t * denom, side="right").sum())

    positive = int(np.count_nonzero(w2 > 0))
    if positive * levels.size < extra:
        # Every positive-gain unit is taken; the rest are zero-gain units, which the tie rule hands
        # out level by level, lowest index first: uniform over the zero-weight prompts.
        counts = np.where(w2 > 0, n_high, n_low).astype(np.int64)
        zero = np.flatnonzero(w2 == 0)
        rest = extra - positive * levels.size
        counts[zero] += rest // zero.size
        counts[zero[: rest % zero.size]] += 1
        return counts

    # Bracket the gain of the extra-th best unit: units_above(a) >= extra > units_above(b).
    a = float(w2[w2 > 0].min() / denom[-1]) / 2.0
    b = float(w2.max() / denom[0]) * 2.0
    above_a, above_b = units_above(a), units_above(b)
    # Positive doubles order like their bit patterns, so bisecting the bits halves the interval in
    # log scale first and ends at adjacent doubles at most ~64 steps later.
    ia, ib = _bits(a), _bits(b)
    while ib - ia > 1 and above_a - above_b > 64:
        im = (ia + ib) // 2
        c = units_above(_double(im))
        if c >= extra:
            ia, above_a = im, c
        else:
            ib, above_b = im, c
    a, b = _double(ia), _double(ib)
    # Widen by a relative margin so that float rounding in the closed form cannot drop a unit
    # that belongs inside; units in between are ordered exactly below.
    lo = _counts_with_gain_above(w2, b * (1.0 + 1e-9), n_low, n_high)
    hi = _counts_with_gain_above(w2, a * (1.0 - 1e-9), n_low, n_high)
    take = extra + num * n_low - int(lo.sum())
    if take < 0 or take > int((hi - lo).sum()):
        return None
    return _take_best_units(w2, lo, hi, take)


def _bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _double(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<q", bits))[0]


def _counts_with_gain_above(w2: np.ndarray, t: float, n_low: int, n_high: int) -> np.ndarray:
    """n_low + #{m in [n_low, n_high) : w_i^2 / (m (m + 1)) > t}, for t > 0, in closed form.

    m (m + 1) < w^2 / t  <=>  m < sqrt(w^2 / t + 1/4) - 1/2, and ceil of that counts m = 0, 1, ...
    """
    if not t > 0:  # a threshold that underflowed to 0: every positive-gain unit is above it
        return np.where(w2 > 0, n_high, n_low).astype(np.int64)
    with np.errstate(over="ignore"):
        y = np.sqrt(w2 / t + 0.25) - 0.5
    return np.clip(np.ceil(y), n_low, n_high).astype(np.int64)


def _take_best_units(w2: np.ndarray, lo: np.ndarray, hi: np.ndarray, take: int) -> np.ndarray:
    """lo plus the `take` best units among units m in [lo_i, hi_i), in the greedy's order."""
    sizes = hi - lo
    owner = np.repeat(np.arange(w2.size), sizes)
    first = np.cumsum(sizes) - sizes
    level = lo[owner] + (np.arange(owner.size) - first[owner])
    gain = w2[owner] / (level * (level + 1.0))
    # Larger gain first, then smaller current count, then smaller index (lexsort: last key is primary).
    best = np.lexsort((owner, level, -gain))[:take]
    return lo + np.bincount(owner[best], minlength=w2.size)


def _is_greedy_optimal(counts: np.ndarray, w2: np.ndarray, n_low: int, n_high: int) -> bool:
    """True iff the units taken are exactly the greedy's: the worst taken beats the best left.

    Each prompt's unit gains fall with m, so comparing the last taken unit and the next unit of
    every prompt (in the order (-gain, m, index)) checks every pair.
    """
    taken = np.flatnonzero(counts > n_low)
    left = np.flatnonzero(counts < n_high)
    if taken.size == 0 or left.size == 0:
        return True
    m_taken = counts[taken] - 1
    g_taken = w2[taken] / (m_taken * (m_taken + 1.0))
    sel = g_taken == g_taken.min()
    m_worst = m_taken[sel].max()
    worst = (-g_taken.min(), m_worst, taken[sel][m_taken[sel] == m_worst].max())
    m_left = counts[left]
    g_left = w2[left] / (m_left * (m_left + 1.0))
    sel = g_left == g_left.max()
    m_best = m_left[sel].min()
    best = (-g_left.max(), m_best, left[sel][m_left[sel] == m_best].min())
    return worst < best


def rollout_counts(spec: AllocationSpec, k: np.ndarray, G: np.ndarray, n: int) -> np.ndarray:
    """Per-prompt rollout counts for one step of a method, both engines' single entry point.

    uniform: n_i = n.  dynamo: n_i = allocate_rollouts(w(k, G), B = N * n, n_low, n_high) with the
    spec's weight, cold start, mastery floor and bounds (bounds default to n/2 .. 3n/2). n is first
    scaled by the spec's budget_scale (1 for every method but the allocation study's positive control).
    """
    n = spec.per_prompt(n)
    budget = len(k) * n
    if spec.kind == "uniform":
        return uniform_allocation(len(k), budget)
    weights = allocation_weights(
        k,
        G,
        weight=spec.weight,
        min_history=spec.min_history,
        mastery_threshold=spec.mastery_threshold,
        weight_floor=spec.weight_floor,
        cold_start=spec.cold_start,
    )
    n_low, n_high = spec.bounds(n)
    return allocate_rollouts(weights, budget, n_low, n_high)
