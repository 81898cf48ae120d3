"""GRPO (Shao et al. 2024, "DeepSeekMath"): uniform n rollouts per prompt, group-normalised
advantages (r - mean) / (std + eps), PPO-clip with symmetric eps = 0.2.

Departure from the textbook: no KL term (kl_coef = 0), token-mean loss aggregation and
dual clip c = 10, as in the DynaMO authors' training script, so that GRPO and DynaMO differ
only in what DynaMO adds.

`grpo-1.5x` is GRPO with 1.5 times the rollout budget (1.5 n per prompt): not a method of the
literature but the allocation study's positive control (docs/STUDY_ALLOCATION.md). Allocation
moves a fixed budget; what 50% more samples buy bounds what moving them can, and a design that
cannot resolve this arm cannot resolve allocation either.
"""

from dynamo.spec import AllocationSpec, MethodSpec

GRPO = MethodSpec(
    name="grpo",
    description="GRPO: uniform allocation, group-normalised advantages, PPO-clip eps 0.2, no KL.",
)

GRPO_MORE_ROLLOUTS = MethodSpec(
    name="grpo-1.5x",
    description="GRPO with 1.5x the rollout budget (1.5 n per prompt): the allocation study's positive control.",
    allocation=AllocationSpec(budget_scale=1.5),
)

METHODS = [GRPO, GRPO_MORE_ROLLOUTS]  # registered by name (baselines/__init__.py)
