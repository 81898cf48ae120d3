"""Clip-Cov (Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
Language Models"; verl `compute_policy_loss_clip_cov`).

Per token, cov_t = (A_t - mean A)(logp_t - mean logp), means over the window's valid tokens.
Among tokens that PPO has not already clipped and whose covariance lies in (lb, ub) = (1, 5), a
uniformly random max(1, int(ratio N)) (ratio = 2e-4, N = valid tokens) have their gradient
detached: their loss term becomes 0 (they stay in the token-mean's denominator). High-covariance
tokens are the ones that drive entropy down; detaching a few keeps entropy from collapsing.

The reference scripts set the PPO clip range to eps_low = eps_high = 1 (clamp(r, 0, 2)) and use
no dual clip; so does this spec. The random pick uses the run's seeded generator (resumable).
Window: micro_batch as the reference (one GPU's micro-batch).
"""

import dataclasses

from baselines.grpo import GRPO
from dynamo.spec import CovarianceSpec, LossSpec

CLIP_COV = dataclasses.replace(
    GRPO,
    name="clip-cov",
    description="Clip-Cov: detach a random 2e-4 of tokens with covariance in (1, 5); PPO clip 1/1.",
    loss=dataclasses.replace(LossSpec(), eps_low=1.0, eps_high=1.0, dual_clip=None),
    covariance=CovarianceSpec(kind="clip_cov", ratio=2e-4, clip_lb=1.0, clip_ub=5.0),
)

METHODS = [CLIP_COV]  # registered by name (baselines/__init__.py)
