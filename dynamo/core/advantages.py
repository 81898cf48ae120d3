"""Group-relative advantages for groups of different sizes (one group = the responses of a prompt).

Departures from the textbook GRPO formula (Shao et al. 2024), stated once:
- The std is the *unbiased* (Bessel, divide by n_i - 1) sample std, as in verl
  (`torch.std` in `compute_grpo_outcome_advantage`) and OpenRLHF's `group_norm`; eps is added
  to the std, not under the square root.
- Groups are keyed by an integer id and may have different sizes n_i (DynaMO's allocation), and
  samples may come in any order; nothing assumes contiguous, equal-size groups.
- A group with no reward spread (all rewards equal) or a single sample gets advantage exactly 0,
  rather than (r - mean) / eps of rounding noise.

Also here: W-REINFORCE's per-response advantages (from correctness, no baseline), the entry point
`sequence_advantages` that picks the estimator from the spec, and the per-token entropy advantage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from dynamo.spec import AdvantageSpec


def group_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    *,
    estimator: Literal["grpo", "mean_only"] = "grpo",
    eps: float = 1e-6,
) -> torch.Tensor:
    """Per-sample advantage from the rewards of its group (samples sharing a group id).

        grpo:      A_j = (r_j - mean_g r) / (std_g r + eps),  std_g unbiased (divide by n_g - 1)
        mean_only: A_j = r_j - mean_g r                       (Dr. GRPO, Liu et al. 2025)
        A_j = 0 if the group has one sample or all its rewards are equal.

    Vectorised with index_add / scatter_reduce over the groups. Sample order does not matter,
    bitwise: the sums are taken in a canonical (group, reward) order.
    Returned detached, in the rewards' floating dtype (float32 for integer or bool rewards).
    """
    if estimator not in ("grpo", "mean_only"):
        raise ValueError(f"estimator must be 'grpo' or 'mean_only', got {estimator!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    if rewards.ndim != 1 or group_ids.ndim != 1 or rewards.shape != group_ids.shape:
        raise ValueError(
            f"rewards and group_ids must be 1-D of the same length, got {tuple(rewards.shape)} "
            f"and {tuple(group_ids.shape)}"
        )
    if group_ids.dtype.is_floating_point or group_ids.dtype.is_complex or group_ids.dtype == torch.bool:
        raise ValueError(f"group_ids must be an integer tensor, got {group_ids.dtype}")
    out_dtype = rewards.dtype if rewards.dtype.is_floating_point else torch.float32
    r = rewards.detach().to(torch.float64)  # float64 so sums of many rewards stay exact enough
    if not torch.isfinite(r).all():
        raise ValueError("rewards must be finite (found NaN or inf)")
    if r.numel() == 0:
        return torch.zeros(0, dtype=out_dtype, device=rewards.device)

    _, inverse, sizes = torch.unique(group_ids, return_inverse=True, return_counts=True)
    # Reduce in a canonical order (by group, then by reward) so that float sums, and hence the
    # advantages, are bitwise independent of the order the samples come in.
    order = torch.sort(r, stable=True).indices
    order = order[torch.sort(inverse[order], stable=True).indices]
    r, inverse = r[order], inverse[order]
    num_groups = sizes.numel()
    zeros = r.new_zeros(num_groups)
    mean = zeros.index_add(0, inverse, r) / sizes
    centred = r - mean[inverse]
    # Spread is tested on the rewards themselves: a constant group's mean may differ from its
    # rewards by rounding, which divided by a tiny std would give noise instead of 0.
    high = zeros.scatter_reduce(0, inverse, r, reduce="amax", include_self=False)
    low = zeros.scatter_reduce(0, inverse, r, reduce="amin", include_self=False)
    has_spread = (high > low)[inverse]  # False for singletons too
    if estimator == "grpo":
        var = zeros.index_add(0, inverse, centred * centred) / (sizes - 1).clamp(min=1)
        adv = centred / (var.sqrt()[inverse] + eps)
    else:
        adv = centred
    out = torch.empty_like(adv)
    out[order] = torch.where(has_spread, adv, torch.zeros_like(adv))
    return out.to(out_dtype)


def w_reinforce_advantages(correct: torch.Tensor, *, positive_weight: float) -> torch.Tensor:
    """W-REINFORCE (Zhu et al. 2025): A = positive_weight (lambda) for a correct response, -1 for a
    wrong one; no group baseline, no std. Keyed on correctness, not on the (possibly shaped)
    reward, so that overlong shaping cannot turn a correct answer into a negative sample.
    float32, detached."""
    if correct.ndim != 1:
        raise ValueError(f"correct must be 1-D (one entry per response), got shape {tuple(correct.shape)}")
    if not positive_weight >= 0:
        raise ValueError(f"positive_weight must be >= 0, got {positive_weight!r}")
    ok = correct.detach().bool()
    return torch.where(ok, positive_weight, -1.0).to(torch.float32)


def sequence_advantages(
    spec: AdvantageSpec,
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    correct: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-response advantage as the method's AdvantageSpec says: `group_advantages` for grpo and
    mean_only, `w_reinforce_advantages` (needs `correct`) for w_reinforce. The one place both
    engines turn rewards into advantages. Detached."""
    if spec.estimator == "w_reinforce":
        if correct is None:
            raise ValueError("advantage.estimator w_reinforce needs the per-response correctness")
        return w_reinforce_advantages(correct, positive_weight=spec.positive_weight).to(rewards.device)
    return group_advantages(rewards, group_ids, estimator=spec.estimator, eps=spec.eps)


def entropy_advantage(
    advantages: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor, *, alpha: float, kappa: float
) -> torch.Tensor:
    """Entropy advantage (Cheng et al. 2025): A' = A + min(alpha H, |A| / kappa) per token, H detached.

    The term is >= 0 and at most |A| / kappa, so with kappa > 1 it never flips the sign of A and it
    vanishes where A = 0 (e.g. a group whose responses are all correct). 0 at masked tokens.
    """
    if not (alpha >= 0 and kappa > 0):
        raise ValueError(f"need alpha >= 0 and kappa > 0, got alpha={alpha!r}, kappa={kappa!r}")
    if advantages.shape != entropy.shape or advantages.shape != mask.shape:
        raise ValueError(
            f"per-token tensors must share one shape, got {tuple(advantages.shape)}, "
            f"{tuple(entropy.shape)}, {tuple(mask.shape)}"
        )
    with torch.no_grad():
        valid = mask.bool()
        adv = torch.where(valid, advantages.detach(), 0.0)
        h = torch.where(valid, entropy.detach().to(adv.dtype), 0.0)
        bonus = torch.minimum(alpha * h, adv.abs() / kappa)
        return torch.where(valid, adv + bonus, 0.0)
