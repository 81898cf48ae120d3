"""Exact integer budget split for any per-prompt objective, by mixed-integer programming (scipy.optimize.milp).

    maximise  sum_i value[i, n_i - n_low]   subject to  sum_i n_i = B,  n_low <= n_i <= n_low + L - 1

Any table of values works (concave or not: VIP's GRPO variance term is not convex below n = 3), so
the rules of other papers need no hand-written solver. Formulation: one binary x[i, l] per prompt
and level ("prompt i gets n_low + l"), one choice per prompt, one budget row; HiGHS solves it to a
zero optimality gap. Rows whose gains per extra sample fall (concave values, e.g. Knapsack RL's)
take a smaller formulation with the same optimum. Values are scaled to a maximum of 1 so that
HiGHS's absolute tolerances do not swamp small objectives. Same inputs give the same counts (HiGHS
is deterministic); among exactly tied optima which one is returned is the solver's choice.
"""

from __future__ import annotations

import operator

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp


def best_counts(value: np.ndarray, budget: int, n_low: int) -> np.ndarray:
    """n_i maximising sum_i value[i, n_i - n_low] with sum_i n_i == budget exactly (int64[N])."""
    value = np.asarray(value, dtype=np.float64)
    budget, n_low = operator.index(budget), operator.index(n_low)
    if value.ndim != 2 or value.shape[1] == 0 or not np.isfinite(value).all():
        raise ValueError(f"value must be a finite [N, levels] table, got shape {value.shape}")
    num, levels = value.shape
    if num == 0:
        if budget:
            raise ValueError(f"budget {budget} cannot be spread over 0 prompts")
        return np.zeros(0, dtype=np.int64)
    if not num * n_low <= budget <= num * (n_low + levels - 1):
        raise ValueError(
            f"infeasible: {num} prompts with {n_low}..{n_low + levels - 1} samples each cannot sum to {budget}"
        )
    scale = float(np.abs(value).max()) or 1.0
    gains = np.diff(value, axis=1) / scale  # gain of the (l+1)-th unit above n_low
    if levels > 1 and (np.diff(gains, axis=1) <= 0).all():
        return n_low + _concave_units(gains, budget - num * n_low)
    one_choice = sparse.kron(sparse.identity(num), np.ones((1, levels)), format="csr")  # sum_l x[i, l] = 1
    size = np.tile(n_low + np.arange(levels, dtype=np.float64), num)  # n of each (i, l)
    result = milp(
        c=-(value / scale).ravel(),
        constraints=[LinearConstraint(one_choice, 1, 1), LinearConstraint(size[None, :], budget, budget)],
        integrality=np.ones(num * levels),
        bounds=Bounds(0, 1),
        options={"mip_rel_gap": 0.0},
    )
    if not result.success:
        raise RuntimeError(f"budget MILP failed: {result.message}")
    chosen = np.asarray(result.x).reshape(num, levels).argmax(axis=1)
    counts = (n_low + chosen).astype(np.int64)
    if int(counts.sum()) != budget:  # a rounding surprise in the solver's 0/1 values
        raise RuntimeError(f"budget MILP returned counts summing to {int(counts.sum())}, not {budget}")
    return counts


def _concave_units(gains: np.ndarray, units: int) -> np.ndarray:
    """Units above n_low per prompt when each row's gains fall: y[i, l] in {0, 1} = "prompt i gets its
    (l+1)-th unit", sum y = units, maximise sum gains y. Falling gains make the best y a prefix in every
    row, so this MILP (one row, N (L - 1) variables) has the multiple-choice one's optimum, much faster."""
    num, steps = gains.shape
    result = milp(
        c=-gains.ravel(),
        constraints=[LinearConstraint(np.ones((1, num * steps)), units, units)],
        integrality=np.ones(num * steps),
        bounds=Bounds(0, 1),
        options={"mip_rel_gap": 0.0},
    )
    if not result.success:
        raise RuntimeError(f"budget MILP failed: {result.message}")
    taken = np.round(np.asarray(result.x)).reshape(num, steps)
    # Tied gains may leave gaps inside a row; the count is what matters, and equal gains give equal value.
    return taken.sum(axis=1).astype(np.int64)
