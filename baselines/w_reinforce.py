"""W-REINFORCE (Zhu et al. 2025, "The Surprising Effectiveness of Negative Reinforcement in LLM
Reasoning"; code: TianHongZXY/RLVR-Decomposed, `compute_psr_nsr_outcome_advantage`).

Weighted REINFORCE: a correct response gets advantage lambda = 0.1, a wrong one -1; no group
baseline, no std normalisation, so learning is driven mostly by pushing down wrong answers.
The loss is REINFORCE in ratio form, -A r, without PPO clip (nor dual clip), as the reference.
The advantage is keyed on correctness, not on the raw reward (the authors' reward is +1/-1).
"""

import dataclasses

from baselines.grpo import GRPO
from dynamo.spec import AdvantageSpec, LossSpec

W_REINFORCE = dataclasses.replace(
    GRPO,
    name="w-reinforce",
    description="W-REINFORCE: A = 0.1 if correct, -1 if wrong, no baseline; REINFORCE loss, no clip.",
    advantage=AdvantageSpec(estimator="w_reinforce", positive_weight=0.1),
    loss=dataclasses.replace(LossSpec(), clip=False, dual_clip=None),
)
