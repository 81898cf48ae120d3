"""Entropy Advantages (Cheng et al. 2025, "Reasoning with Exploration: An Entropy Perspective",
arXiv 2506.14758).

Each token's advantage gets an entropy term, A' = A + min(alpha H, |A| / kappa), with H the
token's entropy, detached (a reward-shaping term, not a gradient through H). The clip at
|A| / kappa keeps the term from dominating or flipping the sign of A, and it vanishes where
A = 0 (a group whose responses are all correct or all wrong). alpha = 0.4, kappa = 2: the values
of public reimplementations, not checked against the paper.
"""

import dataclasses

from baselines.grpo import GRPO
from dynamo.spec import EntropyAdvantageSpec

ENTROPY_ADV = dataclasses.replace(
    GRPO,
    name="entropy-adv",
    description="Entropy Advantages: A + min(0.4 H, |A| / 2) per token.",
    entropy_advantage=EntropyAdvantageSpec(alpha=0.4, kappa=2.0),
)

METHODS = [ENTROPY_ADV]  # registered by name (baselines/__init__.py)
