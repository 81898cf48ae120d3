"""Clip-Higher (Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale").

GRPO with a decoupled, asymmetric PPO clip range: clamp(r, 1 - eps_low, 1 + eps_high) with
eps_low = 0.2 and eps_high = 0.28, so that low-probability tokens with positive advantage can
grow further before the clip stops them (against entropy collapse). Settings: DAPO paper and
verl's recipe/dapo. Everything else is our GRPO (token-mean, dual clip 10, no KL).
"""

import dataclasses

from baselines.grpo import GRPO
from dynamo.spec import LossSpec

CLIP_HIGHER = dataclasses.replace(
    GRPO,
    name="clip-higher",
    description="Clip-Higher (DAPO): GRPO with PPO clip range [1 - 0.2, 1 + 0.28].",
    loss=dataclasses.replace(LossSpec(), eps_low=0.2, eps_high=0.28),
)

METHODS = [CLIP_HIGHER]  # registered by name (baselines/__init__.py)
