"""GRPO (Shao et al. 2024, "DeepSeekMath"): uniform n rollouts per prompt, group-normalised
advantages (r - mean) / (std + eps), PPO-clip with symmetric eps = 0.2.

Departure from the textbook: no KL term (kl_coef = 0), token-mean loss aggregation and
dual clip c = 10, as in the DynaMO authors' training script, so that GRPO and DynaMO differ
only in what DynaMO adds.
"""

from dynamo.spec import MethodSpec

GRPO = MethodSpec(
    name="grpo",
    description="GRPO: uniform allocation, group-normalised advantages, PPO-clip eps 0.2, no KL.",
)
