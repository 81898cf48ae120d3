"""Pass@k: the unbiased estimator against brute-force enumeration of subsets, and its invariants."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamo.evaluation.metrics import mean_pass_at_1, mean_pass_at_k, pass_at_k, pass_at_k_curve


def brute_force(n: int, c: int, k: int) -> Fraction:
    """Fraction of all k-subsets of n samples (c correct) that contain a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(samples[i] for i in s) for s in subsets), len(subsets))


@pytest.mark.parametrize("n", range(1, 10))
def test_matches_brute_force_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(brute_force(n, c, k)), abs=1e-12), (n, c, k)


def test_pass_at_1_is_mean_correctness():
    for n in (1, 7, 32):
        for c in range(n + 1):
            assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)


@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_stable_for_large_n(nck):
    n, c, k = nck
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    value = pass_at_k(n, c, k)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(float(exact), abs=1e-9)


@given(st.integers(1, 64).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_monotone_in_k_and_c(nc):
    n, c = nc
    curve = pass_at_k_curve(n, c)
    assert all(a <= b + 1e-12 for a, b in zip(curve, curve[1:]))
    assert curve[-1] == (1.0 if c > 0 else 0.0)
    if c < n:
        assert all(a <= b + 1e-12 for a, b in zip(curve, pass_at_k_curve(n, c + 1)))


def test_mean_over_problems():
    correct = [[True, False, False, False], [True, True, False, False], [False] * 4]
    assert mean_pass_at_1(correct) == pytest.approx((0.25 + 0.5 + 0) / 3)
    scores = mean_pass_at_k(correct)
    assert list(scores) == [1, 2, 3, 4]
    assert scores[2] == pytest.approx((0.5 + 5 / 6 + 0) / 3)
    assert scores[4] == pytest.approx(2 / 3)
    assert mean_pass_at_k(correct, ks=[1]) == {1: pytest.approx(mean_pass_at_1(correct))}


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_invalid_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_empty_inputs_rejected():
    with pytest.raises(ValueError):
        mean_pass_at_k([])
    with pytest.raises(ValueError):
        mean_pass_at_1([[True], []])
