"""Knapsack RL (Li et al. 2025, "Knapsack RL: Unlocking Exploration of LLMs via Optimizing Budget
Allocation", arXiv 2509.25849; code github.com/liziniu/KnapsackRL, verl/trainer/ppo/exploration_utils.py
and examples/knapsack_trainer/run_knapsack_grpo_7b.sh, read at commit 05eeb92).

Each prompt is a knapsack item whose value, given n samples and success rate p, is

    value(n, p) = (1 - p^n - (1 - p)^n) * p (1 - p)^2
                  (probability that the group has reward spread) x (information gain of a step)

and whose weight is n. The rule, as released:
- p_i = success rate over the prompt's last `buffer_length` (16) graded responses; a prompt with
  fewer than `min_buffer` (8) is not estimated yet and gets the uniform n;
- every estimated prompt first gets `min_n` = 2 (p = 0: `negative_n` = 2; p = 1: `positive_n` = 2);
- the rest of the budget goes to the prompts with 0 < p < 1, each getting at most max_n in total,
  to maximise sum_i value(n_i, p_i) (the released dynamic program counts an item that gets nothing
  above min_n as value 0, kept here);
- fallback (released default on): if sum_i min(max_n, cost_i) with cost_i = log(1 - alpha) /
  log(max(p_i, 1 - p_i)) (samples for one success and one failure with probability alpha = 0.9) is
  below that rest, the excess goes evenly to the never-solved prompts (or, without any, to the other
  estimated ones); with no 0 < p < 1 prompt at all, the whole rest goes to the never-solved ones.
Settings as released: n = 8, max_n = 128, i.e. `max_factor` = 16 (max_n = 16 n here).

Departures: the knapsack is solved as a mixed-integer program (dynamo.core.integer_budget, scipy's
HiGHS) with the budget as an equality, instead of the released dynamic program; the optimum is
the same wherever the released DP uses the whole budget (when it cannot, it spreads the rest evenly
and may pass max_n; here every count stays within [min_n, max_n] and any such rest is handed out
evenly under the cap, lowest index first). The released buffer is filled per epoch ("epoch
estimation"); here it holds the prompt's last graded responses whenever they came.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from dynamo.core.integer_budget import best_counts
from dynamo.core.rules import AllocationRule, register
from dynamo.spec import AllocationSpec, MethodSpec


@dataclass(frozen=True)
class KnapsackSettings:
    min_n: int = field(default=2, metadata={"help": "Samples every estimated prompt gets first."})
    negative_n: int = field(default=2, metadata={"help": "Samples of a never-solved prompt (p = 0)."})
    positive_n: int = field(default=2, metadata={"help": "Samples of an always-solved prompt (p = 1)."})
    max_factor: int = field(default=16, metadata={"help": "Most samples of a prompt, as a multiple of n."})
    buffer_length: int = field(default=16, metadata={"help": "Recent responses that estimate p_i."})
    min_buffer: int = field(default=8, metadata={"help": "Responses needed before p_i is trusted."})
    alpha: float = field(default=0.9, metadata={"help": "Confidence of the fallback's cost estimate."})
    fallback: bool = field(default=True, metadata={"help": "Give budget beyond the estimated need to p = 0."})


def knapsack_value(n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(1 - p^n - (1 - p)^n) p (1 - p)^2."""
    return (1.0 - p**n - (1.0 - p) ** n) * p * (1.0 - p) ** 2


def knapsack_counts(p: np.ndarray, estimated: np.ndarray, n: int, s: KnapsackSettings) -> np.ndarray:
    """Released allocation for success rates p (used where `estimated`), budget N n, bounds [min, max_n]."""
    num, max_n = p.size, s.max_factor * n
    budget = num * n
    eff = estimated & (p > 0) & (p < 1)
    zero = estimated & (p == 0)
    counts = np.where(estimated, np.where(p == 0, s.negative_n, np.where(p == 1, s.positive_n, s.min_n)), n)
    rest = budget - int(counts.sum())
    if rest > 0 and not eff.any():
        if zero.any():
            return _spread(counts, np.flatnonzero(zero), rest, max_n)
        return np.full(num, n, dtype=np.int64)
    if s.fallback:
        cost = np.log(1.0 - s.alpha) / np.log(np.maximum(p[eff], 1.0 - p[eff]))
        need = int(np.minimum(max_n, cost).astype(np.int64).sum())
        if need < rest:
            others = np.flatnonzero(zero) if zero.any() else np.flatnonzero(~eff)
            counts = _spread(counts, others, rest - need, max_n)
            rest = budget - int(counts.sum())
    idx = np.flatnonzero(eff)
    room = max_n - s.min_n  # extra samples one effective prompt can take
    usable = min(rest, idx.size * room)
    extra = np.arange(room + 1)
    value = np.where(extra > 0, knapsack_value(s.min_n + extra[None, :], p[idx, None]), 0.0)
    counts[idx] += best_counts(value, usable, 0)
    return _spread(counts, np.arange(num), budget - int(counts.sum()), max_n)


def _spread(counts: np.ndarray, idx: np.ndarray, amount: int, cap: int) -> np.ndarray:
    """Add `amount` samples one by one round-robin over `idx` (so evenly, the remainder to the lowest
    indices), never past `cap`; what does not fit goes round-robin over all prompts."""
    counts = counts.astype(np.int64).copy()
    for group in (np.asarray(idx, dtype=np.int64), np.arange(counts.size)):
        while amount > 0:
            open_ = group[counts[group] < cap]
            if open_.size == 0:
                break
            take = open_[:amount]
            counts[take] += 1
            amount -= take.size
    if amount:
        raise ValueError(f"cannot place {amount} more samples under the cap {cap}")
    return counts


@register
class KnapsackRL(AllocationRule):
    """Knapsack RL's n_i from each prompt's recent success rate (state: the recent rewards)."""

    name = "knapsack"
    varies_counts = True
    settings_class = KnapsackSettings

    def __init__(self, spec, seed=0):
        super().__init__(spec, seed)
        self.recent: dict[str, deque[int]] = {}

    def bounds(self, n):
        s = self.settings
        return min(s.min_n, s.negative_n, s.positive_n, n), s.max_factor * n

    def counts(self, prompt_ids, k, G, n):
        buffers = [self.recent.get(pid, ()) for pid in prompt_ids]
        sizes = np.array([len(b) for b in buffers])
        wins = np.array([sum(b) for b in buffers])
        p = np.divide(wins, sizes, out=np.zeros(len(buffers)), where=sizes > 0)
        return knapsack_counts(p, sizes >= self.settings.min_buffer, n, self.settings)

    def observe(self, prompt_ids, correct):
        for pid, right in zip(prompt_ids, np.asarray(correct).tolist()):
            self.recent.setdefault(pid, deque(maxlen=self.settings.buffer_length)).append(int(right > 0.5))

    def state_dict(self):
        return {"recent": {pid: list(b) for pid, b in self.recent.items()}}

    def load_state_dict(self, state):
        size = self.settings.buffer_length
        self.recent = {pid: deque(b, maxlen=size) for pid, b in state.get("recent", {}).items()}


KNAPSACK_RL = MethodSpec(
    name="knapsack-rl",
    description="Knapsack RL (Li et al. 2025, arXiv 2509.25849): n_i from a knapsack over value(n, p) = "
    "(1 - p^n - (1-p)^n) p (1-p)^2, 2..16n per prompt.",
    allocation=AllocationSpec(kind="knapsack"),
)

METHODS = [KNAPSACK_RL]  # registered by name (baselines/__init__.py)
