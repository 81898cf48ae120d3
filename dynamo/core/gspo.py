"""GSPO's sequence-level importance ratio, registered as the policy loss `gspo` (Zheng et al. 2025,
"Group Sequence Policy Optimization", arXiv 2507.18071).

Token PPO weighs each token by its own ratio pi(y_t) / pi_old(y_t), a one-sample importance weight
whose noise grows with the response. GSPO uses one ratio per response, the per-token geometric mean
of the sequence's likelihood ratio,

    s_i = exp( (1 / |y_i|) sum_t log(pi(y_t) / pi_old(y_t)) ),

and clips it like PPO's: l = max(-A s, -A clip(s, 1 - eps_low, 1 + eps_high)), with GSPO's small
range (the paper: 3e-4 and 4e-4). The gradient reaches each token through the paper's stop-gradient
form (GSPO-token),

    s_{i,t} = sg[s_i] * pi(y_t) / sg[pi(y_t)],   value s_i,   d s_{i,t} / d log pi(y_t) = s_i,

so each token keeps its own advantage A_t; with one advantage per response (GSPO's case) this is
exactly the gradient of the sequence form, the one OpenRLHF's `--policy_loss_type gspo` differentiates.
The clip is the registered `ppo_clip` applied to this ratio (one PPO clip in the code base), so a
clipped response has all its tokens clipped. The paper averages a response's token terms and then
the responses: `loss.aggregation: seq-mean-token-mean` (baselines/gspo.py).

Departures: the mean runs over the loss mask's tokens (the response's valid tokens; only those kept
by Fork Tokens if that is on too); the token log-ratios are clamped to [-20, 20] before averaging, as
for every policy loss here (verl clamps the sequence's log-ratio at 10 instead: the two differ only
for ratios far outside the clip range, where the term is clipped either way).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dynamo.core.losses import RatioTerm, ppo_clip, register_policy_loss

if TYPE_CHECKING:
    from dynamo.spec import LossSpec


@register_policy_loss("gspo")
def gspo(log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, loss: LossSpec) -> RatioTerm:
    """GSPO: PPO-clip on the sequence ratio s_i = exp(mean_t log r_t), token gradient by stop-gradient."""
    tokens = mask.sum(-1, keepdim=True).clamp(min=1.0)
    sequence_log_ratio = (log_ratio * mask).sum(-1, keepdim=True) / tokens
    # Value log s_i on every token; gradient that of the token's own log-ratio.
    token_form = sequence_log_ratio.detach() + (log_ratio - log_ratio.detach())
    return ppo_clip(token_form, advantages, mask, loss)
