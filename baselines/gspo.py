"""GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization", arXiv 2507.18071; the Qwen3 RL loss).

GRPO's advantages with one importance ratio per response instead of one per token: the geometric
mean of the response's token ratios, clipped to (1 - 3e-4, 1 + 4e-4) (the paper's ranges, sec. 5.1),
each response's token terms averaged and then the responses (seq-mean-token-mean). The ratio is the
policy loss `gspo` (dynamo/core/gspo.py). No KL term (the authors set it to zero), no dual clip, no
entropy bonus, as the paper and verl's `gspo` loss; OpenRLHF's `--policy_loss_type gspo` has the
same ratio and aggregation (its clip range is the run's `--actor.eps_clip_low_high`).

The paper partitions each rollout batch into 4 mini-batches, so its clip acts from the second
mini-batch on; as for every method here, the mini-batch layout is the experiment's
(`train.mini_batch_prompts`), not the method's.
"""

import dataclasses

from baselines.grpo import GRPO
from dynamo.spec import LossSpec

GSPO = dataclasses.replace(
    GRPO,
    name="gspo",
    description="GSPO: one importance ratio per response (geometric mean of token ratios), clip 3e-4/4e-4, "
    "sequence-mean aggregation, no dual clip.",
    loss=LossSpec(
        policy_loss="gspo", eps_low=3e-4, eps_high=4e-4, dual_clip=None, aggregation="seq-mean-token-mean"
    ),
)

METHODS = [GSPO]  # registered by name (baselines/__init__.py)
