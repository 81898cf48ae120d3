"""dynamo.core.advantages: group advantages for groups of different sizes."""

from __future__ import annotations

import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo.core.advantages import group_advantages


def loop_reference(rewards: list[float], group_ids: list[int], estimator: str, eps: float) -> list[float]:
    """Textbook formula, one group at a time."""
    out = [0.0] * len(rewards)
    for g in set(group_ids):
        members = [i for i, x in enumerate(group_ids) if x == g]
        values = [rewards[i] for i in members]
        if len(values) < 2 or max(values) == min(values):
            continue
        mean = sum(values) / len(values)
        std = statistics.stdev(values)  # unbiased, as verl / OpenRLHF
        for i in members:
            out[i] = (rewards[i] - mean) / (std + eps) if estimator == "grpo" else rewards[i] - mean
    return out


def test_equal_size_groups_match_textbook_grpo():
    torch.manual_seed(0)
    rewards = torch.randint(0, 2, (8, 16)).double()
    rewards[0] = 1.0  # a constant group
    eps = 1e-6
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)  # unbiased by default
    expected = torch.where(std > 0, (rewards - mean) / (std + eps), torch.zeros_like(rewards))
    ids = torch.arange(8).repeat_interleave(16)
    got = group_advantages(rewards.flatten(), ids, eps=eps)
    torch.testing.assert_close(got, expected.flatten(), rtol=1e-12, atol=1e-12)


def test_unequal_groups_hand_example():
    # group 7: [1, 0, 0] mean 1/3, unbiased std sqrt(1/3); group 2: [1, 1]; group 5: [0] (singleton)
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    ids = torch.tensor([7, 2, 5, 7, 2, 7])
    s = (1 / 3) ** 0.5
    expected = torch.tensor([(2 / 3) / s, 0.0, 0.0, (-1 / 3) / s, 0.0, (-1 / 3) / s])
    torch.testing.assert_close(group_advantages(rewards, ids, eps=0.0), expected)
    expected_mean_only = torch.tensor([2 / 3, 0.0, 0.0, -1 / 3, 0.0, -1 / 3])
    torch.testing.assert_close(group_advantages(rewards, ids, estimator="mean_only"), expected_mean_only)


def test_singletons_and_constant_groups_are_exactly_zero():
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.7, 0.3, 0.3])
    ids = torch.tensor([0, 0, 0, 1, 2, 2])
    for estimator in ("grpo", "mean_only"):
        got = group_advantages(rewards, ids, estimator=estimator)
        assert torch.equal(got, torch.zeros(6))


@st.composite
def grouped_rewards(draw):
    sizes = draw(st.lists(st.integers(1, 9), min_size=1, max_size=12))
    ids = [g * 13 - 40 for g, n in enumerate(sizes) for _ in range(n)]  # sparse, negative ids too
    binary = draw(st.booleans())
    value = st.sampled_from([0.0, 1.0]) if binary else st.floats(-5, 5, allow_nan=False, width=32)
    rewards = draw(st.lists(value, min_size=len(ids), max_size=len(ids)))
    perm = draw(st.permutations(range(len(ids))))
    return rewards, ids, perm, binary


@settings(max_examples=150, deadline=None)
@given(grouped_rewards(), st.sampled_from(["grpo", "mean_only"]))
def test_permutation_equivariance_and_loop_reference(data, estimator):
    rewards, ids, perm, _ = data
    r = torch.tensor(rewards, dtype=torch.float64)
    g = torch.tensor(ids)
    p = torch.tensor(perm)
    adv = group_advantages(r, g, estimator=estimator)
    adv_perm = group_advantages(r[p], g[p], estimator=estimator)
    assert torch.equal(adv_perm, adv[p])  # bitwise: sums are taken in a canonical order
    expected = torch.tensor(loop_reference(rewards, ids, estimator, 1e-6), dtype=torch.float64)
    torch.testing.assert_close(adv, expected, rtol=1e-9, atol=1e-9)


def test_dtypes_and_errors():
    ids = torch.tensor([0, 0, 1, 1])
    assert group_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.bfloat16), ids).dtype == torch.bfloat16
    assert group_advantages(torch.tensor([1, 0, 1, 1]), ids).dtype == torch.float32
    assert group_advantages(torch.zeros(0), torch.zeros(0, dtype=torch.long)).shape == (0,)
    r = torch.tensor([1.0, 0.0], requires_grad=True)
    assert not group_advantages(r, torch.tensor([0, 0])).requires_grad
    with pytest.raises(ValueError, match="same length"):
        group_advantages(torch.zeros(3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        group_advantages(torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        group_advantages(torch.tensor([float("nan"), 1.0]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="estimator"):
        group_advantages(torch.zeros(2), torch.tensor([0, 0]), estimator="rloo")
