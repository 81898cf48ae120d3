"""Fork Tokens (Wang et al. 2025, "Beyond the 80/20 Rule: High-Entropy Minority Tokens Drive
Effective Reinforcement Learning for LLM Reasoning"; code: Shenzhi-Wang/Beyond-the-80-20-Rule-RLVR).

The policy gradient is kept only on the rho = 20% highest-entropy tokens ("forking tokens") of
the window; every other token is dropped from the loss, which is averaged over the selected
tokens only. Exactly k of the window's N valid tokens are kept, the k of highest entropy,
k = ceil(rho N) written int(rho N + 0.9999) as the reference's `get_global_entropy_top_mask` from
commit 137d8d1 on (earlier: int(rho N), `fork_tokens.rounding: floor`). Window: micro_batch as
the reference repo (one GPU's micro-batch); TRL's `top_entropy_quantile` takes the quantile over
all processes, which is `window: mini_batch`.
"""

import dataclasses

from baselines.grpo import GRPO
from dynamo.spec import ForkTokensSpec

FORK_TOKENS = dataclasses.replace(
    GRPO,
    name="fork-tokens",
    description="Fork Tokens: policy gradient only on the top 20% highest-entropy tokens.",
    fork_tokens=ForkTokensSpec(top_fraction=0.2, rounding="ceil"),
)

METHODS = [FORK_TOKENS]  # registered by name (baselines/__init__.py)
