"""KL-Cov (Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
Language Models"; verl `compute_policy_loss_kl_cov`).

Per token, cov_t = (A_t - mean A)(logp_t - mean logp), means over the window's valid tokens. The
k = max(1, int(ratio N)) tokens of largest (signed) covariance get loss -A r + coef |logp - old_logp|;
every other token -A r. No PPO clip anywhere (nor dual clip). ratio = 2e-3 and coef = 1 are the
verl recipe script's values (verl's config defaults are 2e-4 and 0.1; Cui et al.'s repo writes
0.2, meaning percent). Fully on-policy (one optimiser step per batch) logp = old_logp, so the
penalty is zero in value; it acts through its gradient sign(logp - old_logp) only once the policy
moved, i.e. with more than one mini-batch per batch. Window: micro_batch as the reference.
"""

import dataclasses

from baselines.grpo import GRPO
from dynamo.spec import CovarianceSpec, LossSpec

KL_COV = dataclasses.replace(
    GRPO,
    name="kl-cov",
    description="KL-Cov: |logp - old_logp| penalty on the top 2e-3 covariance tokens; no PPO clip.",
    loss=dataclasses.replace(LossSpec(), policy_loss="reinforce", dual_clip=None),
    covariance=CovarianceSpec(kind="kl_cov", ratio=2e-3, kl_coef=1.0),
)

METHODS = [KL_COV]  # registered by name (baselines/__init__.py)
