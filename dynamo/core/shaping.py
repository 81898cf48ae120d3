"""Reward shaping and group statistics shared by both engines (pure functions, no engine imports).

- DAPO's overlong buffer: its length in tokens is rounded once, here, from the spec's fraction of
  max_new_tokens; the penalty is DAPO's linear ramp (Yu et al. 2025, eq. 13), the same formula as
  OpenRLHF's `apply_overlong_penalty` for an integer buffer.
- Group statistics of per-sample values keyed by group id (groups of any size, any order): the
  spread test behind DAPO's dynamic-sampling filter and the informative-group share, and the
  per-group std that OpenRLHF logs. The filter keys on *correctness* (DAPO keeps groups whose
  accuracy is strictly between 0 and 1), not on shaped rewards: an overlong penalty alone must not
  make an all-wrong group look informative.
"""

from __future__ import annotations

import torch


def overlong_buffer_tokens(fraction: float, max_new_tokens: int) -> int:
    """Tokens of the soft overlong buffer: round(fraction * max_new_tokens), at least 1 when on; 0 when off."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"overlong buffer fraction must be in [0, 1], got {fraction}")
    if fraction == 0.0:
        return 0
    return max(1, int(round(fraction * max_new_tokens)))


def overlong_penalty(
    lengths: torch.Tensor, max_new_tokens: int, buffer_tokens: int, penalty: float
) -> torch.Tensor:
    """DAPO's soft overlong punishment: 0 up to L_max - L_buf, then linear down to -penalty at L_max.

    R_len(y) = -penalty * clamp((|y| - (L_max - L_buf)) / L_buf, 0, 1)   (Yu et al. 2025, eq. 13)
    """
    if buffer_tokens <= 0:
        return torch.zeros(lengths.shape, dtype=torch.float32)
    if buffer_tokens > max_new_tokens:
        raise ValueError(f"overlong buffer ({buffer_tokens} tokens) exceeds max_new_tokens ({max_new_tokens})")
    excess = (lengths.float() - (max_new_tokens - buffer_tokens)) / buffer_tokens
    return -penalty * excess.clamp(min=0.0, max=1.0)


def _groups(group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    _, inverse, sizes = torch.unique(group_ids, return_inverse=True, return_counts=True)
    return inverse, sizes


def groups_with_spread(group_ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Boolean per sample: are the values of the sample's group not all equal? (False for singletons)"""
    if values.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    inverse, sizes = _groups(group_ids)
    v = values.detach().double()
    gmax = torch.full((sizes.numel(),), -torch.inf, dtype=v.dtype).scatter_reduce(0, inverse, v, reduce="amax")
    gmin = torch.full((sizes.numel(),), torch.inf, dtype=v.dtype).scatter_reduce(0, inverse, v, reduce="amin")
    return (gmax > gmin)[inverse]


def informative_share(group_ids: torch.Tensor, values: torch.Tensor) -> float:
    """Share of *groups* (not samples) whose values are not all equal; 0 for an empty batch."""
    if values.numel() == 0:
        return 0.0
    inverse, sizes = _groups(group_ids)
    spread = torch.zeros(sizes.numel(), dtype=torch.bool)
    spread[inverse] = groups_with_spread(group_ids, values)
    return float(spread.double().mean())


def informative_sample_share(group_ids: torch.Tensor, values: torch.Tensor) -> float:
    """Share of *samples* in groups whose values are not all equal (with per-prompt n_i it differs from the
    share of groups: a large informative group weighs more); 0 for an empty batch."""
    if values.numel() == 0:
        return 0.0
    return float(groups_with_spread(group_ids, values).double().mean())


def group_std(group_ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Per sample: the unbiased std of its group's values (0 for singletons), in the values' dtype."""
    inverse, sizes = _groups(group_ids)
    v = values.detach().double()
    mean = torch.zeros(sizes.numel(), dtype=v.dtype).index_add(0, inverse, v) / sizes
    var = torch.zeros_like(mean).index_add(0, inverse, (v - mean[inverse]) ** 2) / (sizes - 1).clamp(min=1)
    return var.sqrt()[inverse].to(values.dtype if values.dtype.is_floating_point else torch.float32)
