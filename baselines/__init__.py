"""Baseline methods, one module each. Each module defines a `MethodSpec` (from the leaf module
`dynamo.spec`, never the registry `dynamo.methods`, which imports this package), with the paper
and its settings cited. docs/METHODS.md explains them; the registry is `dynamo.methods`."""

from baselines.clip_cov import CLIP_COV
from baselines.clip_higher import CLIP_HIGHER
from baselines.dapo import DAPO
from baselines.entropy_adv import ENTROPY_ADV
from baselines.entropy_loss import ENTROPY_LOSS
from baselines.fork_tokens import FORK_TOKENS
from baselines.grpo import GRPO, GRPO_MORE_ROLLOUTS
from baselines.kl_cov import KL_COV
from baselines.w_reinforce import W_REINFORCE

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
    GRPO_MORE_ROLLOUTS,
]
