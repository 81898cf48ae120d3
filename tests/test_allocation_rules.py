"""Allocation rules (dynamo.core.rules and baselines/): hand-computed cases from each paper's equations,
the budget and bounds under degenerate histories, and exact resume of the rules' state."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from baselines.greso import adapted, skip_probability
from baselines.knapsack_rl import KnapsackSettings, knapsack_counts, knapsack_value
from baselines.pods import max_variance_subset
from baselines.vip import predicted_variance, vip_counts
from dynamo.core.integer_budget import best_counts
from dynamo.core.rules import RULES, make_rule, planned_counts
from dynamo.methods import all_methods, get_method
from dynamo.spec import AllocationSpec

NEW_METHODS = ["vip", "knapsack-rl", "greso", "pods"]


def rule_for(method: str, seed: int = 0, **params):
    spec = get_method(method).allocation
    if params:
        spec = AllocationSpec(**{**spec.__dict__, "params": params})
    return make_rule(spec, seed)


# -- registry ------------------------------------------------------------------------------------


def test_every_registered_method_has_a_rule_and_the_new_methods_are_registered():
    methods = all_methods()
    assert set(NEW_METHODS) <= set(methods)
    for name, spec in methods.items():
        assert spec.allocation.kind in RULES, name
    with pytest.raises(ValueError, match="allocation.kind must be one of"):
        get_method("grpo", {"allocation": {"kind": "nope"}})
    with pytest.raises(ValueError, match="unknown allocation.params"):
        get_method("knapsack-rl", {"allocation": {"params": {"max_n": 3}}})
    with pytest.raises(ValueError, match="takes no params"):
        get_method("dynamo", {"allocation": {"params": {"x": 1}}})


# -- budget and bounds under degenerate histories, every rule --------------------------------------


def histories(num: int, n: int):
    """(name, list of (ids, correct) rounds observed before allocating)."""
    ids = [f"q{i}" for i in range(num)]
    rep = [pid for pid in ids for _ in range(2 * n)]
    yield "no history", []
    yield "all solved", [(rep, np.ones(len(rep)))]
    yield "all failed", [(rep, np.zeros(len(rep)))]
    mixed = np.array([(j + i) % (i + 2) == 0 for i in range(num) for j in range(2 * n)], dtype=float)
    yield "mixed", [(rep, mixed)]


@pytest.mark.parametrize("method", ["grpo", "dynamo", *NEW_METHODS])
@pytest.mark.parametrize("num", [1, 2, 7])
def test_budget_exact_and_bounds_held_under_degenerate_histories(method, num):
    n = 4
    ids = [f"q{i}" for i in range(num)]
    for label, rounds in histories(num, n):
        rule = rule_for(method, min_buffer=2) if method == "knapsack-rl" else rule_for(method)
        k, G = np.zeros(num, dtype=np.int64), np.zeros(num, dtype=np.int64)
        for round_ids, correct in rounds:
            rule.observe(round_ids, correct)
            G += 2 * n
            k += np.array([int(correct[[p == pid for p in round_ids]].sum()) for pid in ids])
        counts = planned_counts(rule, ids, k, G, n)  # raises on a broken budget or bound
        assert counts.sum() == num * n, label
        lo, hi = rule.bounds(n)
        assert lo >= 2 and counts.min() >= lo and counts.max() <= hi, label
        keep = rule.keep(np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0]))
        assert keep.dtype == bool and keep.sum() >= 2


# -- exact MILP split ----------------------------------------------------------------------------


def test_best_counts_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(60):
        num, levels, n_low = rng.integers(1, 5), rng.integers(1, 5), rng.integers(0, 3)
        value = rng.normal(size=(num, levels)).round(2)  # rounding makes ties common
        if rng.random() < 0.5:  # concave rows (falling gains, ties included): the one-row formulation
            gains = -np.sort(-rng.choice([0.0, 0.5, 1.0, 2.0], size=(num, levels - 1)), axis=1)
            value = np.concatenate([np.zeros((num, 1)), np.cumsum(gains, axis=1)], axis=1)
        budget = int(rng.integers(num * n_low, num * (n_low + levels - 1) + 1))
        best = max(
            sum(value[i, c] for i, c in enumerate(choice))
            for choice in itertools.product(range(levels), repeat=num)
            if sum(choice) + num * n_low == budget
        )
        counts = best_counts(value, budget, n_low)
        assert counts.sum() == budget
        assert sum(value[i, c - n_low] for i, c in enumerate(counts)) == pytest.approx(best, abs=1e-9)


def test_best_counts_rejects_infeasible_budgets():
    with pytest.raises(ValueError, match="infeasible"):
        best_counts(np.zeros((2, 3)), 7, 0)  # at most 2 + 2


# -- Knapsack RL ---------------------------------------------------------------------------------


def test_knapsack_value_formula():
    assert knapsack_value(np.array(4.0), np.array(0.5)) == pytest.approx((1 - 2 / 16) * 0.5 * 0.25)
    assert knapsack_value(np.array(8.0), np.array(0.0)) == 0 and knapsack_value(np.array(8.0), np.array(1.0)) == 0


def test_knapsack_hand_computed_allocation():
    """N = 5, n = 4, B = 20. Estimated p = .5, .9, 0, 1 get 2 each, the unestimated prompt n = 4: rest 8.
    Fallback need = int(log .1 / log .5) + int(log .1 / log .9) = 3 + 21 >= 8: no fallback. The 8 go
    to the two 0 < p < 1 prompts: 6 + 2 (value .12402 + .00310 = .12712) beats 7 + 1 (.12694),
    8 + 0 (.12476) and 5 + 3 (.12674)."""
    p = np.array([0.5, 0.9, 0.0, 1.0, 0.3])
    estimated = np.array([True, True, True, True, False])
    np.testing.assert_array_equal(knapsack_counts(p, estimated, 4, KnapsackSettings()), [8, 4, 2, 2, 4])


def test_knapsack_fallback_gives_the_excess_to_never_solved_prompts():
    """N = 3, n = 4, B = 12, p = .5, 0, 0: 2 each, rest 6; need int(3.32) = 3 < 6, so the excess 3 goes
    round-robin to the p = 0 prompts (+2, +1), and the knapsack gives the last 3 to the p = .5 prompt."""
    p, est = np.array([0.5, 0.0, 0.0]), np.ones(3, dtype=bool)
    np.testing.assert_array_equal(knapsack_counts(p, est, 4, KnapsackSettings()), [5, 4, 3])
    np.testing.assert_array_equal(knapsack_counts(p, est, 4, KnapsackSettings(fallback=False)), [8, 2, 2])


def test_knapsack_degenerate_histories():
    s, est = KnapsackSettings(), np.ones(4, dtype=bool)
    no_estimate = np.zeros(4, dtype=bool)
    np.testing.assert_array_equal(knapsack_counts(np.full(4, 0.5), no_estimate, 4, s), [4, 4, 4, 4])
    np.testing.assert_array_equal(knapsack_counts(np.ones(4), est, 4, s), [4, 4, 4, 4])  # released: all n
    np.testing.assert_array_equal(knapsack_counts(np.zeros(4), est, 4, s), [4, 4, 4, 4])  # 2 + 2 spread
    np.testing.assert_array_equal(knapsack_counts(np.array([1.0, 1, 0, 0]), est, 4, s), [2, 2, 6, 6])
    np.testing.assert_array_equal(knapsack_counts(np.array([0.5]), np.ones(1, bool), 4, s), [4])


def test_knapsack_estimates_p_from_the_last_buffer_length_responses():
    rule = rule_for("knapsack-rl", buffer_length=4, min_buffer=4)
    rule.observe(["a"] * 6, np.array([1, 1, 0, 0, 1, 0]))  # last 4: 0, 0, 1, 0 -> p = 0.25
    assert list(rule.recent["a"]) == [0, 0, 1, 0]


# -- PODS ----------------------------------------------------------------------------------------


def test_pods_max_variance_subset_hand_cases():
    # 3 correct, 5 wrong, m = 4: two of each (variance .25); stable order keeps the first wrong ones
    # (indices 3, 4) and the last correct ones in sorted order (indices 1, 2).
    keep = max_variance_subset(np.array([1, 1, 1, 0, 0, 0, 0, 0]), 4)
    np.testing.assert_array_equal(keep, [0, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(max_variance_subset(np.array([0, 0, 1, 0]), 2), [1, 0, 1, 0])
    np.testing.assert_array_equal(max_variance_subset(np.ones(5), 2), [1, 1, 0, 0, 0])  # all solved
    np.testing.assert_array_equal(max_variance_subset(np.zeros(3), 2), [1, 1, 0])  # all failed
    # Real-valued rewards: {0, 0.2, 0.9, 1.0}, m = 2 -> the extremes 0 and 1.0.
    np.testing.assert_array_equal(max_variance_subset(np.array([0.2, 1.0, 0.0, 0.9]), 2), [0, 1, 1, 0])


def test_pods_keeps_a_quarter_and_at_least_two():
    rule = rule_for("pods")
    assert rule.keep(np.array([1.0, 0.0] * 8)).sum() == 4
    assert rule.keep(np.array([1.0, 0.0, 1.0])).sum() == 2
    assert rule.counts(["a", "b"], None, None, 16).tolist() == [16, 16]


# -- GRESO ---------------------------------------------------------------------------------------


def test_greso_skip_probability_and_adaptation_hand_cases():
    np.testing.assert_allclose(skip_probability([0, 1, 2, 10], 0.5, 0.01), [0, 0.5, 0.75, 0.99])
    s = rule_for("greso").settings
    assert adapted(0.5, 0.2, 0.25 * 2 / 3, s) == pytest.approx(0.49)  # above target: skip more
    assert adapted(0.5, 0.0, 0.25 / 3, s) == pytest.approx(0.51)
    assert adapted(0.05, 1.0, 0.1, s) == pytest.approx(0.05) and adapted(0.95, 0.0, 0.1, s) == pytest.approx(0.95)


def test_greso_runs_of_zero_spread_groups_and_adaptation():
    rule = rule_for("greso")
    rule.observe(["a"] * 2 + ["b"] * 2 + ["c"] * 2, np.array([1, 1, 0, 0, 1, 0]))
    assert (rule.easy_run, rule.hard_run) == ({"a": 1, "b": 0, "c": 0}, {"a": 0, "b": 1, "c": 0})
    assert (rule.p_easy, rule.p_hard) == (0.5, 0.5)  # no prompt had history: no adaptation yet
    rule.observe(["a"] * 2 + ["b"] * 2, np.array([1, 1, 1, 0]))
    assert rule.easy_run["a"] == 2 and rule.hard_run["b"] == 0
    # easy share 1/2 >= 1/12: p_easy down; hard share 0 < 1/6: p_hard up.
    assert (rule.p_easy, rule.p_hard) == (pytest.approx(0.49), pytest.approx(0.51))
    # Unseen and mixed prompts are never skipped; a long all-correct run is skipped ~99% of the time.
    rule.easy_run["z"] = 50
    skips = np.array([rule.skip(["new", "c", "z"], None, None) for _ in range(2000)])
    assert not skips[:, :2].any() and 0.97 < skips[:, 2].mean() < 1.0


# -- VIP -----------------------------------------------------------------------------------------


def test_vip_objective_and_allocation_against_brute_force():
    p = np.array([0.5, 0.1, 0.9, 1e-6])
    n = np.array([4.0])
    a = p * (1 - p)
    np.testing.assert_allclose(predicted_variance(n, p, "grpo"), a * 3 / 16 + 4e-4 * np.log(p) * 4, rtol=1e-12)
    np.testing.assert_allclose(predicted_variance(n, p, "rloo"), a / 3 + 7e-4 * np.log(p) * 4, rtol=1e-12)
    for objective in ("grpo", "rloo"):
        counts = vip_counts(p, 16, 2, 6, objective)
        best = min(
            (c for c in itertools.product(range(2, 7), repeat=4) if sum(c) == 16),
            key=lambda c: predicted_variance(np.array(c, float), p, objective).sum(),
        )
        assert predicted_variance(counts.astype(float), p, objective).sum() == pytest.approx(
            predicted_variance(np.array(best, float), p, objective).sum(), abs=1e-12
        )
    np.testing.assert_array_equal(vip_counts(np.full(3, 0.3), 13, 2, 6, "grpo"), [5, 4, 4])  # equal p: even


def test_vip_prediction_is_the_last_group_accuracy_or_the_prior():
    rule = rule_for("vip")
    rule.observe(["a"] * 4 + ["b"] * 4, np.array([1, 1, 1, 0, 0, 0, 0, 0]))
    p = rule.predict(["a", "b", "unseen"])
    np.testing.assert_allclose(p, [0.75, 1e-6, 1 / (1 + np.e)], rtol=1e-9)
    rule.observe(["a"] * 2, np.array([0, 1]))
    assert rule.predict(["a"])[0] == pytest.approx(0.5)


# -- state resumes exactly -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["knapsack-rl", "vip", "greso"])
def test_rule_state_survives_a_json_round_trip_exactly(method):
    params = {"min_buffer": 2} if method == "knapsack-rl" else {}
    rng = np.random.default_rng(1)
    ids = [f"q{i}" for i in range(6)]
    first = rule_for(method, seed=5, **params)
    for _ in range(3):
        rep = [pid for pid in ids for _ in range(4)]
        first.observe(rep, rng.integers(0, 2, len(rep)).astype(float))
        first.skip(ids, None, None)
    saved = json.loads(json.dumps(first.state_dict()))
    assert saved, "a stateful rule saved nothing"
    second = rule_for(method, seed=5, **params)
    second.load_state_dict(saved)
    k = G = np.zeros(6, dtype=np.int64)
    for _ in range(3):
        np.testing.assert_array_equal(first.skip(ids, k, G), second.skip(ids, k, G))
        np.testing.assert_array_equal(first.counts(ids, k, G, 4), second.counts(ids, k, G, 4))
        correct = rng.integers(0, 2, 24).astype(float)
        first.observe([pid for pid in ids for _ in range(4)], correct)
        second.observe([pid for pid in ids for _ in range(4)], correct)
    assert first.state_dict() == second.state_dict()
    fresh = rule_for(method, seed=5, **params)
    assert fresh.state_dict() != first.state_dict()  # the state is not trivially the initial one


def test_the_readmes_allocation_rule_runs_as_written(monkeypatch):
    """The README's "Add a method" allocation rule, executed from the README itself (our own file): it
    registers, keeps the budget and bounds, and favours the prompts it calls hard."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("**An allocation rule**") :]
    code = section[
        section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)
    ]
    monkeypatch.setattr("dynamo.core.rules.RULES", dict(RULES))  # the example's registration stays here
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    spec = namespace["HARD_FIRST"]
    rule = make_rule(spec.allocation)
    k, G = np.array([0, 4, 1, 3, 0, 0]), np.array([4, 4, 4, 4, 0, 4])  # accuracies 0, 1, .25, .75, unseen, 0
    counts = planned_counts(rule, [str(i) for i in range(6)], k, G, 4)
    assert counts.sum() == 24 and counts.min() >= 2 and counts.max() <= 6
    assert counts[[0, 2, 5]].min() > counts[[1, 3, 4]].max()  # accuracy < 0.5 gets more
