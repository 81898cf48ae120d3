"""Per-token log-probabilities and entropies of a causal LM on right-padded sequences."""

from __future__ import annotations

import torch

from dynamo.core.modulation import token_entropy


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp, entropy), both [S, L]; position t holds log pi(x_t | x_<t) and the entropy of that
    next-token distribution (position 0 is 0). Logits are divided by the sampling temperature so
    that log pi is the probability the sampler actually used (as verl does).

    The entropy only scales advantages (a detached factor) unless it is also a loss term, so it
    is computed without a graph by default: the full-vocabulary graph would cost memory.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    if temperature != 1.0:
        logits = logits / temperature
    targets = input_ids[:, 1:]
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if entropy_grad:
        entropy = token_entropy(logits)
    else:
        with torch.no_grad():
            entropy = token_entropy(logits.detach())
    zero = logp.new_zeros(logp.shape[0], 1)
    return torch.cat([zero, logp], dim=1), torch.cat([zero, entropy], dim=1)
