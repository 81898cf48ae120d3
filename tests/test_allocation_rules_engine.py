"""Allocation rules in the local engine: the budget per round, that each rule acts (skips, uneven
counts, down-selection), and that a run killed mid-way resumes with the rule's state to the same result.

Two epochs over the 16-prompt pool (4 prompts a step, 8 steps), so prompts come back and the
rules' histories matter; answers are random (test_trainer.RandomAnswerGenerator)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_trainer import assert_same_trajectory, make_cfg, run, run_killed_in_step_four, tiny_model  # noqa: F401

from dynamo import metrics_names as M
from dynamo.core.rules import make_rule
from dynamo.methods import all_methods, get_method

# Knapsack trusts p_i after min_buffer responses: 4 here (one group) instead of 8, so that it acts
# in the second epoch.
OVERRIDES = {"knapsack-rl": {"allocation": {"params": {"min_buffer": 4}}}}


def method(name: str):
    return get_method(name, OVERRIDES.get(name))


@pytest.mark.parametrize("name", ["vip", "knapsack-rl", "greso", "pods"])
def test_rule_runs_keeps_the_budget_and_acts(tmp_path, tiny_model, name):  # noqa: F811
    rows, _ = run(tmp_path, tiny_model, method(name), cfg=make_cfg(steps=8))
    assert all(r[M.N_TOTAL] == 16 for r in rows)  # N n = 4 * 4 every step
    if name in ("vip", "knapsack-rl"):
        assert any(r[M.N_MAX] > r[M.N_MIN] for r in rows)
    if name == "greso":
        assert sum(r[M.SKIPPED_PROMPTS] for r in rows) > 0
        assert all(r[M.PROMPTS] == 4 * r.get(M.GENERATION_ROUNDS, 1) for r in rows)  # skips do not cost rollouts
    if name == "pods":  # one quarter of each group of 4, at least 2: half the samples are trained on
        assert all(r[M.TOKENS_TRAINED] < r[M.TOKENS_GENERATED] for r in rows)


STATEFUL = ["vip", "knapsack-rl", "greso"]  # methods whose rule keeps state across steps


def test_every_rule_that_keeps_state_has_a_resume_test():
    """A rule whose state_dict() holds anything after it observed samples must be in STATEFUL."""
    stateful = set()
    for spec in all_methods().values():
        rule = make_rule(spec.allocation)
        rule.observe(["a", "a", "b", "b"], np.array([1.0, 0.0, 1.0, 1.0]))
        if rule.state_dict():
            stateful.add(spec.allocation.kind)
    assert stateful == {method(name).allocation.kind for name in STATEFUL}


@pytest.mark.parametrize("name", STATEFUL)
def test_killed_run_resumes_with_the_rule_state(tmp_path, tiny_model, monkeypatch, name):  # noqa: F811
    cfg = make_cfg(steps=8, checkpoint_every=2)
    spec = method(name)
    uninterrupted = run(tmp_path, tiny_model, spec, cfg=cfg, name="full")
    run_killed_in_step_four(tmp_path, tiny_model, spec, cfg, monkeypatch)
    state = json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and state["rule"]  # the rule's state is in the checkpoint
    assert_same_trajectory(uninterrupted, run(tmp_path, tiny_model, spec, cfg=cfg, name="killed"))


def test_budget_scale_sets_the_local_engines_rollouts(tmp_path, tiny_model):  # noqa: F811
    """grpo-1.5x (allocation.budget_scale 1.5) samples 6 per prompt where the experiment's n is 4."""
    rows, _ = run(tmp_path, tiny_model, get_method("grpo-1.5x"), cfg=make_cfg(steps=2))
    assert [r[M.N_TOTAL] for r in rows] == [24, 24]  # 4 prompts x 6
    assert all(r[M.N_MIN] == r[M.N_MAX] == 6 for r in rows)
