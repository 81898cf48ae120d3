"""Baseline methods, one module each. Each module defines a `MethodSpec` (from the leaf module
`dynamo.spec`, never the registry `dynamo.methods`, which imports this package), with the paper
and its settings cited. docs/METHODS.md explains them; the registry is `dynamo.methods`."""

from baselines.clip_cov import CLIP_COV
from baselines.clip_higher import CLIP_HIGHER
from baselines.dapo import DAPO
from baselines.entropy_adv import ENTROPY_ADV
from baselines.entropy_loss import ENTROPY_LOSS
from baselines.fork_tokens import FORK_TOKENS
from baselines.greso import GRESO
from baselines.grpo import GRPO, GRPO_MORE_ROLLOUTS
from baselines.kl_cov import KL_COV
from baselines.knapsack_rl import KNAPSACK_RL
from baselines.pods import PODS
from baselines.reinforce_ada import REINFORCE_ADA, REINFORCE_ADA_POS
from baselines.vip import VIP
from baselines.w_reinforce import W_REINFORCE, W_REINFORCE_PAPER

BASELINES = [
    GRPO,
    DAPO,
    CLIP_HIGHER,
    ENTROPY_LOSS,
    FORK_TOKENS,
    ENTROPY_ADV,
    CLIP_COV,
    KL_COV,
    W_REINFORCE,
    W_REINFORCE_PAPER,
    GRPO_MORE_ROLLOUTS,
]
# Allocation methods: each module also registers its rule in dynamo.core.rules.
BASELINES += [VIP, KNAPSACK_RL, GRESO, PODS, REINFORCE_ADA, REINFORCE_ADA_POS]
