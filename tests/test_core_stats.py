"""dynamo.core.stats: per-prompt history keyed by stable prompt id."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamo.core.allocation import allocate_rollouts, allocation_weights
from dynamo.core.stats import PromptStats


def test_update_with_unequal_counts():
    ids = ["a"] * 3 + ["b"] * 5 + ["c"]
    rewards = [1, 0, 1] + [0, 0, 0, 1, 0] + [1]
    stats = PromptStats().updated(ids, rewards)
    k, G = stats.counts(["a", "b", "c", "unseen"])
    np.testing.assert_array_equal(k, [2, 1, 1, 0])
    np.testing.assert_array_equal(G, [3, 5, 1, 0])
    assert k.dtype == np.int64 and G.dtype == np.int64
    stats2 = stats.updated(["b", "b", "d"], [1.0, 1.0, 0.0])
    k, G = stats2.counts(["a", "b", "d"])
    np.testing.assert_array_equal(k, [2, 3, 0])
    np.testing.assert_array_equal(G, [3, 7, 1])
    # updated() returns a new object; the old one is unchanged
    assert stats.counts(["b"])[1][0] == 5 and "d" not in stats


def test_threshold_and_tensor_rewards():
    torch = pytest.importorskip("torch")
    stats = PromptStats().updated(["x"] * 4, torch.tensor([0.5, 0.51, 1.0, -1.0]))
    assert stats.counts(["x"])[0][0] == 2  # success means reward > 0.5
    stats = PromptStats().updated(["x"] * 2, [True, False])
    assert stats.counts(["x"])[0][0] == 1


def test_round_trip_through_json():
    stats = PromptStats().updated(["p1", "p2", "p2", "p3"], [1, 0, 1, 0])
    again = PromptStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again == stats
    assert len(again) == 3
    np.testing.assert_array_equal(again.counts(["p2"])[0], [1])
    with pytest.raises(ValueError, match="not a PromptStats"):
        PromptStats.from_dict({"counts": {}})


def test_invalid_updates():
    with pytest.raises(ValueError, match="one reward per prompt id"):
        PromptStats().updated(["a", "b"], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        PromptStats().updated(["a"], [float("nan")])
    with pytest.raises(ValueError, match="strings"):
        PromptStats().updated([1, 2], [1.0, 0.0])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["q0", "q1", "q2", "q3", "q4"]), st.sampled_from([0.0, 1.0])), max_size=60),
    st.randoms(use_true_random=False),
)
def test_shuffling_pairs_together_gives_same_stats(pairs, rnd):
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    a = PromptStats().updated([p for p, _ in pairs], [r for _, r in pairs])
    b = PromptStats().updated([p for p, _ in shuffled], [r for _, r in shuffled])
    assert a == b
    assert a.to_dict() == b.to_dict()


def test_alignment_under_non_uniform_allocation():
    """Each prompt is solved with its own fixed probability; responses are generated with a
    non-uniform allocation and handed back shuffled. The stats must credit every prompt with
    exactly its own count and rewards (the released code's bug paired them with another prompt's)."""
    ids = [f"prompt-{i}" for i in range(12)]
    always = {pid: i % 3 == 0 for i, pid in enumerate(ids)}  # solved always / never by id
    stats = PromptStats().updated([pid for pid in ids for _ in range(4)], [0.0] * 48)
    stats = stats.updated(ids[:6] * 2, [1.0] * 12)  # give half the prompts some spread
    k, G = stats.counts(ids)
    counts = allocate_rollouts(allocation_weights(k, G), 12 * 8, 4, 12)
    assert len(set(counts.tolist())) > 1  # really non-uniform
    samples = [(pid, float(always[pid])) for pid, n in zip(ids, counts) for _ in range(n)]
    random.Random(1).shuffle(samples)
    after = stats.updated([p for p, _ in samples], [r for _, r in samples])
    k2, G2 = after.counts(ids)
    np.testing.assert_array_equal(G2 - G, counts)
    np.testing.assert_array_equal(k2 - k, np.where([always[p] for p in ids], counts, 0))
