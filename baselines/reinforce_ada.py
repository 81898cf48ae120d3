"""Reinforce-Ada (Xiong et al. 2025, "Reinforce-Ada: An Adaptive Sampling Framework for Reinforce-Style
LLM Training", arXiv 2510.04996; code github.com/RLHFlow/Reinforce-Ada, verl/trainer/ppo/ray_trainer.py
`_generate_multi_round_adaptive_downsampling`, verl/trainer/ppo/core_algos.py
`compute_grpo_outcome_advantage` and scripts/run_reinforce_ada.sh, read at 05be605).

A sequential rule: the step's prompts are sampled in rounds, and a prompt leaves the active set once
its exit condition holds; the kept group of each prompt has a fixed size, chosen to hold both
correct and wrong responses where it can.

    round r = 1..R: every active prompt gets m more samples (all m graded before any check);
                    a prompt exits once its samples of the step hold
                      balanced: at least n/2 correct and n - n/2 wrong   (Reinforce-Ada-balance)
                      positive: at least one correct                    (Reinforce-Ada-pos)
    down-selection: the first min(c, n/2) correct and first min(w, n - that) wrong, in generation
                    order; if that is short of n, more correct ones (there were fewer wrong), so a
                    prompt that never exits (e.g. never solved) trains on n samples of one kind
    advantage:      A_j = r_j - p_hat, p_hat = c / (c + w) over *all* the prompt's samples of the step
                    (the "global statistics" baseline), no division by the std (released script)

Settings as released: n = 4 trained per prompt (`actor_rollout_ref.rollout.n`), m = 8 per round,
R = 4 rounds, exit rule balanced, global statistics on, std normalisation off. Here n is the
experiment's rollouts per prompt and m = `round_factor` n (2 n: 8 for n = 4).

Budget. The trained group size is fixed (n per prompt: N n samples per step, as GRPO); the number
generated is not: between m and R m per prompt, so a step generates between N m and N R m samples
(2 N n to 8 N n with the released settings). `bounds(n)` = (m, R m) is that cap, checked by the
engine every round; the metrics `cost/responses` and `cost/tokens_generated` count every generated
sample, so the cost columns show what the method spent. It does not run at GRPO's generation budget.
The step's training accuracy and reward are the first round's (every prompt m samples), as the
released code logs them; the shares of samples in groups with reward spread count all of a prompt's
samples of the step, before the down-selection.

Departures and switches:
- Positive / negative: the released code calls a sample positive at reward > 0.7; here it is the
  graded correctness (0/1), so an overlong penalty cannot make a correct sample negative.
- The released positive-exit fallback (prompts never solved) computes a target share of correct
  samples that is always one, then fills with wrong samples: the same n wrong samples as here.
- `global_baseline` (released script: on; the code's default: off) switches between the pool mean
  above and the method's own advantage estimator on the kept samples only. With it on, the method's
  `advantage.estimator` picks whether to divide by the pool's std: mean_only (released script,
  `norm_adv_by_std_in_grpo=False`) or grpo ((r - p_hat) / (std_pool + eps), std_pool the unbiased
  std of the pool's 0/1 correctness, clamped to >= eps, as in the released code). A pool of one
  sample has baseline 0 (released). Unlike this project's group advantage, a kept group without
  reward spread is not forced to 0 (the released estimator does not): r - p_hat is 0 there anyway
  unless shaping moved a reward.
- The paper's text was read only in summary offline; the rule above is the released code's.
- Both engines run the rounds through the same loop (`dynamo.core.rules.sample_in_rounds`): each
  round is generated and graded whole before `more` is asked again, a prompt's samples keep their
  generation order (round by round) for the down-selection, and the pool counts are taken before it.
  The OpenRLHF engine does not combine the rule with DAPO's dynamic sampling (refused at launch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from dynamo.core.rules import AllocationRule, PoolCounts, register
from dynamo.spec import AdvantageSpec, AllocationSpec, MethodSpec


@dataclass(frozen=True)
class ReinforceAdaSettings:
    exit_rule: Literal["balanced", "positive"] = field(
        default="balanced",
        metadata={
            "help": "balanced: a prompt exits once it holds n/2 correct and n/2 wrong samples "
            "(Reinforce-Ada-balance, released default); positive: once it holds one correct (Reinforce-Ada-pos)."
        },
    )
    round_factor: int = field(
        default=2,
        metadata={"help": "Samples per active prompt per round, as a multiple of n (released: 8 for n = 4)."},
    )
    max_rounds: int = field(default=4, metadata={"help": "Generation rounds at most per step (released: 4)."})
    global_baseline: bool = field(
        default=True,
        metadata={
            "help": "Advantage baseline from all of the prompt's samples of the step (released script); "
            "False: the method's advantage estimator on the kept samples only."
        },
    )


def has_exited(correct: np.ndarray, n: int, exit_rule: str) -> bool:
    """The exit condition on one prompt's graded samples of the step (0/1 correctness)."""
    right = int(np.count_nonzero(np.asarray(correct) > 0.5))
    wrong = len(correct) - right
    if exit_rule == "balanced":
        return right >= n // 2 and wrong >= n - n // 2
    return right >= 1


def round_counts(correct_so_far: Sequence[np.ndarray], n: int, s: ReinforceAdaSettings) -> np.ndarray:
    """Samples each prompt gets in the next round: m = round_factor * n while it is active (no exit
    yet and fewer than max_rounds rounds done), else 0."""
    m = s.round_factor * n
    return np.array(
        [
            0 if len(c) >= s.max_rounds * m or (len(c) and has_exited(c, n, s.exit_rule)) else m
            for c in correct_so_far
        ],
        dtype=np.int64,
    )


def balanced_subset(correct: np.ndarray, n: int) -> np.ndarray:
    """Mask of the n samples kept from one prompt's samples (in generation order): the first
    min(c, n/2) correct and first min(w, n - that) wrong, topped up with further correct ones."""
    right = np.asarray(correct) > 0.5
    right_rows, wrong_rows = np.flatnonzero(right), np.flatnonzero(~right)
    take_right = min(len(right_rows), n // 2)
    take_wrong = min(len(wrong_rows), n - take_right)
    take_right = min(len(right_rows), n - take_wrong)  # wrong ones short: more correct ones
    keep = np.zeros(len(right), dtype=bool)
    keep[right_rows[:take_right]] = True
    keep[wrong_rows[:take_wrong]] = True
    return keep


def pool_advantages(
    rewards: torch.Tensor, pool_correct: torch.Tensor, pool_size: torch.Tensor, *, divide_by_std: bool, eps: float
) -> torch.Tensor:
    """A = r - p_hat (or / (std + eps)), p_hat and std of the pool's 0/1 correctness per sample;
    a pool of one sample: p_hat = 0, std = 1 (released). float32, detached."""
    r = rewards.detach().to(torch.float64)
    size = pool_size.to(torch.float64)
    several = size > 1
    p_hat = torch.where(several, pool_correct.to(torch.float64) / size.clamp(min=1), 0.0)
    # unbiased std of c ones and (size - c) zeros: sqrt(p (1 - p) size / (size - 1))
    var = p_hat * (1 - p_hat) * size / (size - 1).clamp(min=1)
    std = torch.where(several, var.sqrt().clamp(min=eps), 1.0)
    adv = (r - p_hat) / (std + eps) if divide_by_std else r - p_hat
    return adv.to(torch.float32)


@register
class ReinforceAda(AllocationRule):
    """Rounds of m samples per active prompt until its exit condition or R rounds; n kept per prompt."""

    name = "reinforce-ada"
    sequential = True
    selects = True
    settings_class = ReinforceAdaSettings

    def __init__(self, spec, seed=0):
        super().__init__(spec, seed)
        s = self.settings
        if s.round_factor < 1 or s.max_rounds < 1:
            raise ValueError(
                f"reinforce-ada round_factor and max_rounds must be >= 1, got {s.round_factor}, {s.max_rounds}"
            )
        self.n = None  # the trained group size, set by the first round (the step's n)

    def bounds(self, n):
        m = self.settings.round_factor * n
        return m, self.settings.max_rounds * m

    def check_feasible(self, num_prompts, n):
        if n < 2:
            raise ValueError(
                f"reinforce-ada trains on n >= 2 samples per prompt (a baseline needs two), got n={n}"
            )

    def counts(self, prompt_ids, k, G, n):
        raise RuntimeError("reinforce-ada samples in rounds: an engine must call more(), not counts()")

    def more(self, prompt_ids, correct_so_far, n):
        self.n = n
        return round_counts(correct_so_far, n, self.settings)

    def keep(self, correct):
        if self.n is None:
            raise RuntimeError("reinforce-ada: keep() before any round (the engine must call more() first)")
        return balanced_subset(correct, self.n)

    def advantages(self, spec, rewards, group_ids, correct, pool: PoolCounts):
        if not self.settings.global_baseline:
            return super().advantages(spec, rewards, group_ids, correct, pool)
        if spec.estimator not in ("grpo", "mean_only"):
            raise ValueError(
                f"reinforce-ada: global_baseline needs advantage.estimator grpo or mean_only: {spec.estimator!r}"
            )
        return pool_advantages(
            rewards, pool.correct, pool.size, divide_by_std=spec.estimator == "grpo", eps=spec.eps
        ).to(rewards.device)


REINFORCE_ADA = MethodSpec(
    name="reinforce-ada",
    description="Reinforce-Ada (Xiong et al. 2025, arXiv 2510.04996): sample in rounds of 2n per active "
    "prompt (at most 4) until n/2 correct and n/2 wrong, train on n per prompt, baseline from all samples.",
    allocation=AllocationSpec(kind="reinforce-ada"),
    advantage=AdvantageSpec(estimator="mean_only"),
)

REINFORCE_ADA_POS = MethodSpec(
    name="reinforce-ada-pos",
    description="Reinforce-Ada-pos (Xiong et al. 2025, arXiv 2510.04996): as reinforce-ada, a prompt exits "
    "once one sample is correct.",
    allocation=AllocationSpec(kind="reinforce-ada", params={"exit_rule": "positive"}),
    advantage=AdvantageSpec(estimator="mean_only"),
)

METHODS = [REINFORCE_ADA, REINFORCE_ADA_POS]  # registered by name (baselines/__init__.py)
