"""W-REINFORCE (Zhu et al. 2025, "The Surprising Effectiveness of Negative Reinforcement in LLM
Reasoning"; code: TianHongZXY/RLVR-Decomposed, `compute_psr_nsr_outcome_advantage`).

Weighted REINFORCE: a correct response gets advantage lambda = 0.1, a wrong one -1; no group
baseline, no std normalisation, so learning is driven mostly by pushing down wrong answers.
The advantage is keyed on correctness, not on the raw reward (the authors' reward is +1/-1).

Two readings of the loss, both registered:
- `w-reinforce`, as released (the one the tables use): the authors' run (verl,
  `run_qwen2.5-math-7b_psr_nsr.sh`) keeps verl's stock PPO loss, so the ratio is clipped to
  [0.8, 1.2] (`clip_ratio` 0.2, no dual clip in that verl) and the loss carries verl's default
  entropy bonus 0.001 (`entropy_coeff`, not overridden), token-mean aggregated.
- `w-reinforce-paper`, as written: the paper's REINFORCE objective, -A r without clip or bonus.

The released run also takes 4 optimiser mini-batches per step (1,024 prompts x 8 in mini-batches
of 256 prompts), so its clip acts from the second mini-batch on. The mini-batch layout is the
experiment's (`train.mini_batch_prompts`), shared by every method of a table, not something a
method spec sets: our GPU experiments take 16 mini-batches per step (DynaMO's layout), the
embedded one 2.
"""

import dataclasses

from baselines.grpo import GRPO
from dynamo.spec import AdvantageSpec, LossSpec

W_REINFORCE = dataclasses.replace(
    GRPO,
    name="w-reinforce",
    description="W-REINFORCE as released: A = 0.1 if correct, -1 if wrong, no baseline; PPO clip 0.2, "
    "no dual clip, entropy bonus 0.001.",
    advantage=AdvantageSpec(estimator="w_reinforce", positive_weight=0.1),
    loss=dataclasses.replace(LossSpec(), eps_low=0.2, eps_high=0.2, dual_clip=None, entropy_coef=0.001),
)

W_REINFORCE_PAPER = dataclasses.replace(
    W_REINFORCE,
    name="w-reinforce-paper",
    description="W-REINFORCE as written: A = 0.1 if correct, -1 if wrong, no baseline; REINFORCE loss, "
    "no clip, no entropy bonus.",
    loss=dataclasses.replace(LossSpec(), policy_loss="reinforce", dual_clip=None),
)

METHODS = [W_REINFORCE, W_REINFORCE_PAPER]  # registered by name (baselines/__init__.py)
