"""PODS (Xu et al. 2025, "Not All Rollouts are Useful: Down-Sampling Rollouts in LLM Reinforcement
Learning", arXiv 2504.13818): generate n responses per prompt, train on the m of them whose rewards
have the largest variance ("max-variance down-sampling"); advantages are normalised within the m.

Max-variance down-sampling: with the group's rewards sorted, the optimal m-subset is the i
highest plus the m - i lowest for some i (the paper's lemma), so scanning i = 0..m finds it; the
first maximising i wins. With 0/1 correctness this keeps as many correct as wrong responses as
the group allows. Here the rule sees correctness (as DAPO's group filter does), not shaped rewards;
ties among equal rewards keep the earliest responses.

Settings: the released runs (github.com/YixuanEvenXu/pods, read at 3fc107e) train on a quarter of
what they generate: the single-GPU runs generate n = 64 and train on m = 16 (result files
`...-512-64-16-*`; the m- and n-scaling runs vary one of the two around that point), the 8-GPU runs
(open-r1/exp.sh) generate 128 and train on 32 (`--pods_full_size=128 --num_generations=32`). The
selection code itself (the MaxVarGRPO trainer) is not in the repository copy that could be read, so
the rule below follows the paper's lemma. Here `keep_fraction` = 0.25, m =
max(2, round(keep_fraction * n_i)), so a group keeps at least two responses (a group-normalised
advantage needs two). The paper compares with GRPO at equal *trained* samples (PODS generates 4x as
many); table 4 compares at equal generation, so here the generation budget is B = N n as for GRPO
(`allocation.budget_scale: 4` restores the paper's arrangement) and fewer samples are trained on:
N m samples a step, in mini-batches of `mini_batch_prompts` whole groups in the local engine and of
`mini_batch_prompts * m` samples in the OpenRLHF engine (`trained_per_prompt`), so a step takes
N / mini_batch_prompts optimizer updates per epoch in both, as for GRPO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynamo.core.rules import AllocationRule, register
from dynamo.spec import AllocationSpec, MethodSpec


@dataclass(frozen=True)
class PodsSettings:
    keep_fraction: float = field(
        default=0.25, metadata={"help": "m / n: share of each group's responses trained on (paper: 4 of 16)."}
    )


def max_variance_subset(rewards: np.ndarray, m: int) -> np.ndarray:
    """Boolean mask of the m rewards with the largest variance: the i highest and m - i lowest,
    best i in 0..m (first on ties); stable order among equal rewards."""
    r = np.asarray(rewards, dtype=np.float64)
    m = min(int(m), r.size)
    order = np.argsort(r, kind="stable")  # ascending
    best, best_var = 0, -1.0
    for i in range(m + 1):
        chosen = np.concatenate([order[: m - i], order[r.size - i :]])
        var = float(r[chosen].var()) if m else 0.0
        if var > best_var + 1e-12:
            best, best_var = i, var
    keep = np.zeros(r.size, dtype=bool)
    keep[order[: m - best]] = True
    keep[order[r.size - best :]] = True
    return keep


@register
class Pods(AllocationRule):
    """Uniform n_i = n; then each group keeps its max-variance m-subset."""

    name = "pods"
    selects = True
    settings_class = PodsSettings

    def __init__(self, spec, seed=0):
        super().__init__(spec, seed)
        if not 0 < self.settings.keep_fraction <= 1:
            raise ValueError(f"pods keep_fraction must be in (0, 1], got {self.settings.keep_fraction}")

    def keep(self, correct):
        return max_variance_subset(correct, self.trained_per_prompt(len(correct)))

    def trained_per_prompt(self, n):
        """m = max(2, round(keep_fraction * n)), at most the group's n."""
        return min(n, max(2, round(self.settings.keep_fraction * n)))


PODS = MethodSpec(
    name="pods",
    description="PODS (Xu et al. 2025, arXiv 2504.13818): generate n, train on the max-variance quarter "
    "of each group.",
    allocation=AllocationSpec(kind="pods"),
)

METHODS = [PODS]  # registered by name (baselines/__init__.py)
