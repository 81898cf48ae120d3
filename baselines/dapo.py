"""DAPO (Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale").

Four changes to GRPO: Clip-Higher (eps_low = 0.2, eps_high = 0.28); dynamic sampling (drop
groups whose rewards are all equal and refill the batch with fresh prompts); token-level
policy-gradient loss (token-mean over the mini-batch); overlong reward shaping (a linear
penalty over the last `overlong_buffer` tokens before the length limit).

The overlong buffer is a fraction of the run's max_new_tokens: the paper's 4096 of 20480
tokens is 0.2, kept here so that it scales with the tiny embedded model's short limit.
"""

from dynamo.spec import GroupFilterSpec, LossSpec, MethodSpec, RewardShapingSpec

DAPO = MethodSpec(
    name="dapo",
    description="DAPO: clip-higher 0.28, dynamic sampling, token-level loss, overlong shaping.",
    group_filter=GroupFilterSpec(kind="dynamic_sampling"),
    loss=LossSpec(eps_low=0.2, eps_high=0.28, aggregation="token-mean"),
    reward_shaping=RewardShapingSpec(overlong_buffer_fraction=0.2, overlong_penalty=1.0),
)

METHODS = [DAPO]  # registered by name (baselines/__init__.py)
