"""VIP (Nguyen et al., ICLR 2026, "Adaptive Rollout Allocation for Online Reinforcement Learning with
Verifiable Rewards", arXiv 2602.01601; code github.com/HieuNT91/VIP, src/vip/allocation/
bernoulli_allocation.py and src/vip/success_rate_prediction/gaussian_process.py, read from the
public index; the repository itself says its code is still being cleaned up).

Two parts:
1. Predict each prompt's success probability p_i with a Gaussian process on the logit scale:
   prior mean -1 (p = 0.27), observations logit(accuracy of the prompt's last group), an RBF kernel
   (length scale 0.4) over distances between sentence embeddings of the prompts (all-MiniLM-L6-v2).
2. Choose integer n_i to minimise the summed predicted gradient variance plus a cost term,

       rloo: sum_i a_i / (n_i - 1) + b_i n_i      grpo: sum_i a_i (n_i - 1) / n_i^2 + b_i n_i
       a_i = p_i (1 - p_i),  b_i = gamma log(p_i),  gamma = 7e-4 (rloo) / 4e-4 (grpo),

   subject to sum_i n_i = B and bounds; if all p_i are equal the allocation is uniform.

Departures, stated plainly:
- No embedding model runs offline here, so the kernel between different prompts is 0 (identity
  kernel). Under it the GP posterior mean at a prompt is the logit of its last observed group
  accuracy (the released fit overwrites observed means with the observations) and the prior
  elsewhere: prompts do not borrow strength from similar prompts. This is the documented
  simplification; a kernel over prompt texts would restore the released predictor.
- The released fit may reset the mean to the prior each step (`reuse_mean=False`); with an identity
  kernel that would forget every prompt not in the last step, so observed means persist here.
- The released code solves the continuous problem with SLSQP and rounds greedily, zeroing counts
  below 4; here the integer problem is solved exactly (dynamo.core.integer_budget, a MILP), within
  this project's bounds n_low..n_high (defaults n/2..3n/2; released 4..32), never below two samples.
- Default objective "grpo" (this project trains GRPO advantages); "rloo" is the released default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from dynamo.core.integer_budget import best_counts
from dynamo.core.rules import AllocationRule, register
from dynamo.spec import AllocationSpec, MethodSpec

GAMMA = {"rloo": 7e-4, "grpo": 4e-4}  # released cost weights


@dataclass(frozen=True)
class VipSettings:
    objective: Literal["grpo", "rloo"] = field(
        default="grpo", metadata={"help": "Variance model: grpo a(n-1)/n^2 or rloo a/(n-1) (released default)."}
    )
    prior_logit: float = field(default=-1.0, metadata={"help": "GP prior mean on the logit scale."})
    clip: float = field(default=1e-6, metadata={"help": "p is clipped to [clip, 1 - clip]."})


def predicted_variance(n: np.ndarray, p: np.ndarray, objective: str) -> np.ndarray:
    """Per-prompt objective V_i(n) of the released allocation (lower is better)."""
    a, b = p * (1.0 - p), GAMMA[objective] * np.log(p)
    if objective == "rloo":
        return a / (n - 1.0) + b * n
    return a * (n - 1.0) / n**2 + b * n


def vip_counts(p: np.ndarray, budget: int, n_low: int, n_high: int, objective: str) -> np.ndarray:
    """argmin sum_i V_i(n_i) with sum n_i = budget, n_low <= n_i <= n_high; uniform if all p_i are equal."""
    if p.size == 0 or np.ptp(p) < 1e-6:  # released: std < 1e-6 -> even split
        counts = np.full(p.size, budget // max(p.size, 1), dtype=np.int64)
        counts[: budget - int(counts.sum())] += 1
        return counts
    levels = np.arange(n_low, n_high + 1, dtype=np.float64)
    return best_counts(-predicted_variance(levels[None, :], p[:, None], objective), budget, n_low)


@register
class Vip(AllocationRule):
    """VIP's allocation from GP-predicted success rates (state: the posterior logit means)."""

    name = "vip"
    varies_counts = True
    settings_class = VipSettings

    def __init__(self, spec, seed=0):
        super().__init__(spec, seed)
        self.logit: dict[str, float] = {}

    def predict(self, prompt_ids) -> np.ndarray:
        s = self.settings
        f = np.array([self.logit.get(pid, s.prior_logit) for pid in prompt_ids], dtype=np.float64)
        return np.clip(1.0 / (1.0 + np.exp(-f)), s.clip, 1.0 - s.clip)

    def counts(self, prompt_ids, k, G, n):
        n_low, n_high = self.bounds(n)
        return vip_counts(self.predict(prompt_ids), len(prompt_ids) * n, n_low, n_high, self.settings.objective)

    def observe(self, prompt_ids, correct):
        ids = np.asarray(list(prompt_ids), dtype=object)
        right = np.asarray(correct, dtype=np.float64) > 0.5
        for pid in dict.fromkeys(ids.tolist()):
            acc = float(np.clip(right[ids == pid].mean(), self.settings.clip, 1.0 - self.settings.clip))
            self.logit[pid] = float(np.log(acc / (1.0 - acc)))

    def state_dict(self):
        return {"logit": dict(self.logit)}

    def load_state_dict(self, state):
        self.logit = {pid: float(v) for pid, v in state.get("logit", {}).items()}


VIP = MethodSpec(
    name="vip",
    description="VIP (Nguyen et al. 2026, arXiv 2602.01601): predicted p_i (GP, identity kernel offline), "
    "n_i minimising "
    "summed predicted gradient variance under the budget.",
    allocation=AllocationSpec(kind="vip"),
)

METHODS = [VIP]  # registered by name (baselines/__init__.py)
