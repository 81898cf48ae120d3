"""Reinforce-Ada (baselines/reinforce_ada.py): the exit condition per round, the cap on rounds, the
down-selection's balance and size, the global-statistics advantage, all against hand-computed cases;
degenerate histories (all solved, all failed, one prompt); the local engine's round loop end to end
(counts, alignment, cost metrics, resume); and `dynamo methods` listing it with its citation."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
import torch
from test_trainer import (  # noqa: F401
    assert_same_trajectory,
    make_cfg,
    problems,
    run,
    run_killed_in_step_four,
    scripted_generation,
    tiny_model,
)

from baselines.reinforce_ada import ReinforceAdaSettings, balanced_subset, pool_advantages, round_counts
from dynamo import metrics_names as M
from dynamo.core.advantages import group_advantages
from dynamo.core.rules import AllocationRule, PoolCounts, make_rule, planned_more
from dynamo.engines.local import trainer as trainer_mod
from dynamo.engines.local.trainer import LocalTrainer
from dynamo.methods import get_method

BALANCED, POSITIVE = ReinforceAdaSettings(), ReinforceAdaSettings(exit_rule="positive")


def c(*bits):
    return np.array(bits, dtype=float)


def rule(method="reinforce-ada", **overrides):
    spec = get_method(method, {"allocation": {"params": overrides}} if overrides else None)
    return make_rule(spec.allocation), spec


# -- the rule's pieces, by hand ------------------------------------------------------------------


def test_round_counts_exit_condition_per_round_and_cap():
    n = 4  # round size m = 2n = 8, at most 4 rounds = 32 samples
    assert round_counts([c(), c()], n, BALANCED).tolist() == [8, 8]  # first round: everyone
    two_right = c(1, 0, 0, 0, 1, 0, 0, 0)
    one_right = c(0, 0, 1, 0, 0, 0, 0, 0)
    all_right = np.ones(8)
    # balanced: n/2 = 2 correct and 2 wrong needed
    assert round_counts([two_right, one_right, all_right], n, BALANCED).tolist() == [0, 8, 8]
    # positive: one correct is enough
    assert round_counts([two_right, one_right, all_right, np.zeros(8)], n, POSITIVE).tolist() == [0, 0, 0, 8]
    # the cap: after 4 rounds (32 samples) nothing more, exit or not
    assert round_counts([np.zeros(32), np.ones(32), np.zeros(24)], n, BALANCED).tolist() == [0, 0, 8]
    assert round_counts([np.zeros(16)], n, ReinforceAdaSettings(max_rounds=2)).tolist() == [0]
    # the condition is checked on all of a prompt's samples of the step, not on the last round
    two_rounds = np.concatenate([c(1, 1, 1, 1, 1, 1, 1, 1), c(0, 0, 1, 1, 1, 1, 1, 1)])
    assert round_counts([two_rounds], n, BALANCED).tolist() == [0]
    # n = 6: 3 correct and 3 wrong
    assert round_counts([c(*[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])], 6, BALANCED).tolist() == [12]
    assert round_counts([c(*[1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])], 6, BALANCED).tolist() == [0]


def test_balanced_subset_hand_cases_size_and_order():
    n = 4
    # first 2 correct (rows 0, 2) and first 2 wrong (rows 1, 4), in generation order
    assert np.flatnonzero(balanced_subset(c(1, 0, 1, 1, 0, 0, 1, 0), n)).tolist() == [0, 1, 2, 4]
    # one correct: it and the first 3 wrong
    assert np.flatnonzero(balanced_subset(c(0, 0, 1, 0, 0, 0, 0, 0), n)).tolist() == [0, 1, 2, 3]
    # one wrong (row 5): the first 3 correct with it
    assert np.flatnonzero(balanced_subset(c(1, 1, 1, 1, 1, 0, 1, 1), n)).tolist() == [0, 1, 2, 5]
    # all solved / all failed: the first n of the one kind
    assert np.flatnonzero(balanced_subset(np.ones(32), n)).tolist() == [0, 1, 2, 3]
    assert np.flatnonzero(balanced_subset(np.zeros(32), n)).tolist() == [0, 1, 2, 3]
    # size exactly n whenever a prompt has at least n samples; balance as far as the pool allows
    rng = np.random.default_rng(0)
    for _ in range(200):
        size, n = int(rng.integers(6, 40)), int(rng.choice([2, 4, 6]))
        pool = (rng.random(size) < rng.random()).astype(float)
        keep = balanced_subset(pool, n)
        right = int(pool[keep].sum())
        assert keep.sum() == n
        assert right == min(int(pool.sum()), max(n // 2, n - int((1 - pool).sum())))


def test_pool_advantage_hand_cases():
    # pool of 8 with 2 correct: p_hat = 0.25; kept 2 correct, 2 wrong
    r = torch.tensor([1.0, 1.0, 0.0, 0.0])
    pc, ps = torch.full((4,), 2), torch.full((4,), 8)
    assert pool_advantages(r, pc, ps, divide_by_std=False, eps=1e-6).tolist() == [0.75, 0.75, -0.25, -0.25]
    std = (0.25 * 0.75 * 8 / 7) ** 0.5  # unbiased std of two ones and six zeros
    got = pool_advantages(r, pc, ps, divide_by_std=True, eps=1e-6)
    assert got.tolist() == pytest.approx([0.75 / (std + 1e-6)] * 2 + [-0.25 / (std + 1e-6)] * 2, rel=1e-6)
    # all failed (32 wrong, 4 kept): 0; a shaped reward below 0 stays below (no forced zero)
    zero, pool32 = torch.zeros(4, dtype=torch.long), torch.full((4,), 32)
    assert pool_advantages(torch.zeros(4), zero, pool32, divide_by_std=False, eps=1e-6).tolist() == [0] * 4
    shaped = pool_advantages(torch.tensor([-0.5, 0, 0, 0]), zero, pool32, divide_by_std=False, eps=0)
    assert shaped.tolist() == [-0.5, 0, 0, 0]
    # a pool of one sample: baseline 0, std 1 (released)
    one = torch.tensor([1])
    assert pool_advantages(torch.tensor([1.0]), one, one, divide_by_std=True, eps=0).tolist() == [1.0]
    # the pool mean differs from the kept group's mean (0.5 here): that is the point of the switch
    kept_only = group_advantages(r, torch.zeros(4, dtype=torch.long), estimator="mean_only")
    assert kept_only.tolist() == [0.5, 0.5, -0.5, -0.5]


def test_rule_switch_between_pool_and_kept_baseline():
    r = torch.tensor([1.0, 1.0, 0.0, 0.0])
    ids = torch.zeros(4, dtype=torch.long)
    pool = PoolCounts(torch.full((4,), 2), torch.full((4,), 8))
    ada, spec = rule()
    assert spec.advantage.estimator == "mean_only"  # released: norm_adv_by_std_in_grpo=False
    assert ada.advantages(spec.advantage, r, ids, r.bool(), pool).tolist() == [0.75, 0.75, -0.25, -0.25]
    local, spec = rule(global_baseline=False)
    assert local.advantages(spec.advantage, r, ids, r.bool(), pool).tolist() == [0.5, 0.5, -0.5, -0.5]
    # a rule that is not Reinforce-Ada ignores the pool: its method's estimator on the kept samples
    grpo = get_method("grpo")
    base = make_rule(grpo.allocation).advantages(grpo.advantage, r, ids, r.bool(), pool)
    assert torch.equal(base, group_advantages(r, ids))
    with pytest.raises(ValueError, match="global_baseline needs"):
        get = get_method("reinforce-ada", {"advantage": {"estimator": "w_reinforce"}})
        make_rule(get.allocation).advantages(get.advantage, r, ids, r.bool(), pool)


# -- the whole step's sampling, with a scripted verifier ----------------------------------------


def simulate(ada, outcome, num: int, n: int = 4):
    """The engine's round loop without a model: `outcome(prompt, j)` grades the prompt's j-th sample
    of the step. Returns (samples generated per prompt, rounds, kept mask per prompt)."""
    ids = [f"q{i}" for i in range(num)]
    so_far = [np.zeros(0) for _ in ids]
    rounds = 0
    while (more := planned_more(ada, ids, so_far, n)).any():
        rounds += 1
        for i, extra in enumerate(more.tolist()):
            so_far[i] = np.concatenate([so_far[i], [outcome(i, len(so_far[i]) + j) for j in range(extra)]])
    return [len(s) for s in so_far], rounds, [ada.keep(s) for s in so_far], so_far


@pytest.mark.parametrize("method", ["reinforce-ada", "reinforce-ada-pos"])
def test_degenerate_histories_all_solved_all_failed_one_prompt(method):
    ada, _ = rule(method)
    assert ada.bounds(4) == (8, 32)
    # all solved: balanced never exits (no wrong sample) and stops at the cap; positive exits at once
    counts, rounds, keep, pools = simulate(ada, lambda i, j: 1.0, num=3)
    expected = [32, 32, 32] if method == "reinforce-ada" else [8, 8, 8]
    assert counts == expected and rounds == expected[0] // 8
    assert all(k.sum() == 4 and p[k].sum() == 4 for k, p in zip(keep, pools))
    # all failed: both run every round and train on 4 wrong samples
    counts, rounds, keep, pools = simulate(ada, lambda i, j: 0.0, num=3)
    assert counts == [32, 32, 32] and rounds == 4
    assert all(k.sum() == 4 and p[k].sum() == 0 for k, p in zip(keep, pools))
    # one prompt, solved on its 11th sample only (second round)
    counts, rounds, keep, pools = simulate(ada, lambda i, j: float(j == 10), num=1)
    if method == "reinforce-ada":
        assert counts == [32] and rounds == 4  # never two correct
    else:
        assert counts == [16] and rounds == 2
    assert np.flatnonzero(keep[0]).tolist() == [0, 1, 2, 10]  # the one correct and the first three wrong


def test_mixed_prompts_leave_the_active_set_at_their_own_round():
    ada, _ = rule()
    # prompt 0: every 4th correct (exits after round 1); prompt 1: correct from sample 20 on (round 3);
    # prompt 2: never correct (all 4 rounds)
    outcome = [lambda j: float(j % 4 == 0), lambda j: float(j >= 20), lambda j: 0.0]
    counts, rounds, keep, pools = simulate(ada, lambda i, j: outcome[i](j), num=3)
    assert counts == [8, 24, 32] and rounds == 4
    assert [np.flatnonzero(k).tolist() for k in keep] == [[0, 1, 2, 4], [0, 1, 20, 21], [0, 1, 2, 3]]


def test_planned_more_refuses_a_rule_past_its_cap():
    class Greedy(AllocationRule):
        name = "greedy-test"

        def bounds(self, n):
            return (n, 2 * n)

        def more(self, prompt_ids, correct_so_far, n):
            return np.full(len(prompt_ids), n)

    greedy = Greedy(get_method("grpo").allocation)
    assert planned_more(greedy, ["a"], [np.zeros(4)], 4).tolist() == [4]
    with pytest.raises(RuntimeError, match="past its cap"):
        planned_more(greedy, ["a"], [np.zeros(8)], 4)


def test_settings_are_checked_before_any_compute():
    with pytest.raises(ValueError, match="round_factor and max_rounds"):
        rule(max_rounds=0)
    with pytest.raises(ValueError, match="exit_rule"):
        rule(exit_rule="sometimes")
    ada, _ = rule()
    with pytest.raises(ValueError, match="n >= 2"):
        ada.check_feasible(4, 1)
    with pytest.raises(RuntimeError, match="must call more"):  # an engine without the round loop
        ada.counts(["a"], None, None, 4)
    with pytest.raises(RuntimeError, match="before any round"):
        ada.keep(np.ones(8))


# -- the local engine ----------------------------------------------------------------------------


class KindGenerator:
    """Stands in for hf_generate: prompt p{k}'s j-th sample of the whole run is correct by kind k % 4:
    0 never, 1 every 4th, 2 always, 3 every other. Logs (prompt id, count) per call."""

    def __init__(self, tokenizer, by_prompt):
        self.tokenizer, self.by_prompt = tokenizer, by_prompt
        self.seen: Counter = Counter()
        self.log: list[tuple[str, int]] = []

    def __call__(self, model, tokenizer, prompts, counts, **kw):
        out = []
        for i, (prompt, count) in enumerate(zip(prompts, counts)):
            problem = self.by_prompt[prompt]
            kind = int(problem.id[1:]) % 4
            for _ in range(count):
                j = self.seen[problem.id]
                self.seen[problem.id] += 1
                right = [False, j % 4 == 0, True, j % 2 == 0][kind]
                text = f"\\boxed{{{problem.answers[0]}}}" if right else "\\boxed{-7}" + "!" * (j % 3)
                out.append(scripted_generation(tokenizer, i, prompt, text))
            if count:
                self.log.append((problem.id, count))
        return out


def test_local_engine_rounds_down_selection_advantages_and_cost(tmp_path, tiny_model, monkeypatch):  # noqa: F811
    trainer = LocalTrainer(
        make_cfg(prompts_per_step=4), get_method("reinforce-ada"), 1, tmp_path / "r", tiny_model, problems()
    )
    fake = KindGenerator(trainer.tokenizer, {p.prompt: p for p in problems()})
    monkeypatch.setattr(trainer_mod, "hf_generate", fake)
    generated_by_kind = {0: 32, 1: 8, 2: 32, 3: 8}  # balanced exit after round 1 for kinds 1 and 3
    pool_mean_by_kind = {0: 0.0, 1: 0.25, 2: 1.0, 3: 0.5}
    for _ in range(4):
        start = len(fake.log)
        batch, info = trainer.collect(defaultdict(float))
        generated = Counter()
        for pid, count in fake.log[start:]:
            generated[pid] += count
        kinds = {pid: int(pid[1:]) % 4 for pid in generated}
        assert dict(generated) == {pid: generated_by_kind[k] for pid, k in kinds.items()}
        assert info[M.RESPONSES] == info[M.N_TOTAL] == sum(generated.values())
        assert info[M.SAMPLING_ROUNDS] == (4 if {0, 2} & set(kinds.values()) else 1)
        # accuracy over the first round (8 per prompt); spread over all of a prompt's samples
        first_round_right = {0: 0, 1: 2, 2: 8, 3: 4}
        assert info[M.ACCURACY] == pytest.approx(sum(first_round_right[k] for k in kinds.values()) / 32)
        spread = sum(generated[pid] for pid, k in kinds.items() if k in (1, 3))
        assert info[M.INFORMATIVE_SAMPLE_SHARE] == pytest.approx(spread / sum(generated.values()))
        # trained: exactly n = 4 per prompt, each sample aligned with its own prompt
        groups = defaultdict(list)
        for s in range(batch.num_samples):
            groups[batch.group_ids[s].item()].append(s)
        assert sorted(len(rows) for rows in groups.values()) == [4, 4, 4, 4]
        advantages = trainer.advantages(batch)
        for rows in groups.values():
            pid = batch.prompt_ids[rows[0]]
            assert all(batch.prompt_ids[s] == pid for s in rows)
            right = int(batch.correct[rows].sum())
            assert right == {0: 0, 1: 2, 2: 4, 3: 2}[kinds[pid]]  # balanced where the pool allows
            expected = batch.rewards[rows] - pool_mean_by_kind[kinds[pid]]
            assert advantages[rows].tolist() == pytest.approx(expected.tolist())
        assert info[M.TOKENS_TRAINED] == float(batch.response_mask.sum()) < info[M.TOKENS_GENERATED]


def test_reinforce_ada_trains_and_resumes_to_the_same_result(tmp_path, tiny_model, monkeypatch):  # noqa: F811
    """End to end on the tiny model (random answers), 4 steps; a run killed in step four resumes from
    its step-2 checkpoint to the same metrics and weights (the rule keeps no state across steps)."""
    cfg = make_cfg(steps=4, checkpoint_every=2)
    spec = get_method("reinforce-ada")
    rows, _ = full = run(tmp_path, tiny_model, spec, cfg=cfg, name="full")
    assert all(8 * 4 <= r[M.RESPONSES] <= 32 * 4 and r[M.N_MIN] >= 8 and r[M.N_MAX] <= 32 for r in rows)
    run_killed_in_step_four(tmp_path, tiny_model, spec, cfg, monkeypatch)
    assert_same_trajectory(full, run(tmp_path, tiny_model, spec, cfg=cfg, name="killed"))


def test_dynamo_methods_lists_it_with_its_citation(capsys):
    from dynamo.cli import main

    assert main(["methods"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    for name in ("reinforce-ada", "reinforce-ada-pos"):
        assert "arXiv 2510.04996" in lines[name] and "Xiong et al." in lines[name]
