"""Allocation rules in the OpenRLHF engine (real OpenRLHF 0.11.2 code, Ray faked as in test_openrlhf):
the patched PPOTrainer allocates exactly as the local engine's rule fed the same graded samples, its
rule state rides in the checkpoint's client_states, skipped prompts are replaced before allocation,
the combinations the engine cannot run are refused, and the rules that down-select (PODS) or sample
in rounds (Reinforce-Ada) give the local engine's rounds, kept samples, pool counts, advantages and
step metrics when both engines see the same graded samples."""

from __future__ import annotations

from collections import defaultdict

import openrlhf_stubs
import pytest
import torch

openrlhf_stubs.install()
try:
    import openrlhf  # noqa: F401
except ImportError as err:  # pragma: no cover - CI installs it
    pytest.skip(f"openrlhf 0.11.2 is not importable ({err})", allow_module_level=True)

import test_openrlhf  # noqa: E402
from test_openrlhf import GEN_KW, fake_ray, make_generator, make_trainer, openrlhf_args  # noqa: E402, F401

from dynamo import metrics_names as M  # noqa: E402
from dynamo.core.rules import make_rule, planned_counts  # noqa: E402
from dynamo.core.stats import PromptStats  # noqa: E402
from dynamo.engines.openrlhf.launcher import check_supported  # noqa: E402
from dynamo.engines.openrlhf.rollout import prompt_id  # noqa: E402
from dynamo.engines.openrlhf.trainer import RULE_KEY  # noqa: E402
from dynamo.methods import all_methods, get_method  # noqa: E402

OVERRIDES = {"knapsack-rl": {"allocation": {"params": {"min_buffer": 4}}}}


def counting_rules() -> list[str]:
    """One registered method per allocation rule whose counts vary (the first by name): a new rule is
    covered here without editing this file."""
    first: dict[str, str] = {}
    for name, spec in sorted(all_methods().items()):
        rule = make_rule(spec.allocation)
        if rule.varies_counts and not rule.sequential:
            first.setdefault(spec.allocation.kind, name)
    return sorted(first.values())


def test_every_counting_rule_is_compared():
    assert {"dynamo", "vip", "knapsack-rl"} <= set(counting_rules())


@pytest.mark.parametrize("name", counting_rules())
def test_openrlhf_allocation_equals_the_local_rule(fake_ray, name):  # noqa: F811
    n, num_prompts = 4, 8
    args = openrlhf_args(n=n, batch=num_prompts)
    trainer = make_trainer("grpo", args)
    trainer.spec = get_method(name, OVERRIDES.get(name))
    asked: list[tuple[list[str], list[int]]] = []

    def allocate(ids):
        counts = trainer.allocate(ids)
        asked.append((list(ids), counts))
        return counts

    gen, _ = make_generator(args, 100, allocate)
    trainer.samples_generator = gen
    local = make_rule(trainer.spec.allocation)  # what the local engine holds, fed the same samples
    local_stats = PromptStats()
    uneven = False
    for step in range(3):
        if step:  # serve the same prompts again: their history now drives the allocation
            gen._dataloader_iter = iter(gen.prompts_dataloader[:num_prompts])
        gen.generate_samples(**GEN_KW)
        ids, counts = asked[-1]
        assert counts == planned_counts(local, ids, *local_stats.counts(ids), n).tolist()
        assert sum(counts) == num_prompts * n
        uneven |= len(set(counts)) > 1
        graded = list(gen.graded)
        trainer.update_stats()
        graded_ids, correct = [pid for pid, _ in graded], [float(score > 0.5) for _, score in graded]
        local_stats = local_stats.updated(graded_ids, correct)
        local.observe(graded_ids, correct)
    assert uneven, "the rule never departed from uniform: the comparison proves little"
    assert trainer.rule.state_dict() == local.state_dict()


def test_rule_state_rides_in_client_states(fake_ray, monkeypatch):  # noqa: F811
    args = openrlhf_args(n=4, batch=4)
    trainer = make_trainer("grpo", args)
    trainer.spec = get_method("vip")
    trainer.rule.observe(["a", "a", "b", "b"], [1.0, 0.0, 0.0, 0.0])
    client_states = {}
    trainer.samples_generator = type("G", (), {"steps_done": 1})()
    monkeypatch.setattr(type(trainer).__mro__[1], "save_logs_and_checkpoints", lambda *a, **k: None)
    trainer.save_logs_and_checkpoints(5, {}, client_states)
    assert client_states[RULE_KEY] == trainer.rule.state_dict() and client_states[RULE_KEY]["logit"]


def test_openrlhf_runs_every_rule_and_refuses_selection_with_dapos_refills():
    for name in ("vip", "knapsack-rl", "greso", "pods", "reinforce-ada", "reinforce-ada-pos"):
        check_supported(get_method(name))
    for name in ("pods", "reinforce-ada"):
        dapo_refills = {"group_filter": {"kind": "dynamic_sampling"}}
        with pytest.raises(ValueError, match=rf"kind=.{name}. with group_filter.kind=.dynamic_sampling."):
            check_supported(get_method(name, dapo_refills))


def test_skipped_prompts_are_replaced_before_allocation(fake_ray):  # noqa: F811
    """GRESO in the OpenRLHF generator: q1 and q2 have long all-correct runs (skip probability
    1 - 0.5^1000 = 1 with min_keep 0), so the step rolls out q0, q3, q4, q5; all four get n."""
    n, num_prompts = 4, 4
    args = openrlhf_args(n=n, batch=num_prompts)
    trainer = make_trainer("grpo", args)
    trainer.spec = get_method("greso", {"allocation": {"params": {"min_keep": 0.0}}})
    gen, log = make_generator(args, 100, trainer.allocate, **trainer.rule_hooks())
    trainer.samples_generator = gen
    for i in (1, 2):
        trainer.rule.easy_run[prompt_id(f"q{i}", str(i))] = 1000
    samples, _, consumed, _ = gen.generate_samples(**GEN_KW)
    assert sorted(p for p, _ in log) == ["q0", "q3", "q4", "q5"] and {c for _, c in log} == {n}
    assert len(samples) == num_prompts * n and consumed == num_prompts + 2
    assert gen.step_log[M.SKIPPED_PROMPTS] == 2 and gen.step_log[M.PROMPTS] == num_prompts  # generated for


# -- down-selection and sampling in rounds: the OpenRLHF engine against the local engine --------------

# Correctness of prompt q<i>'s k-th sample of the step (k counts over all its rounds), shared by both
# engines' fakes: q0 never, q1 at k = 5, 13, 21, 29 (a second correct in round 2), q2 always, q3 every
# other, q4 at k = 6, 7 and from 16 on, q5 only at k = 20 (round 3).
PATTERNS = [
    lambda k: False,
    lambda k: k % 8 == 5,
    lambda k: True,
    lambda k: k % 2 == 1,
    lambda k: k in (6, 7) or k >= 16,
    lambda k: k == 20,
]
PROMPT_TOKENS = [1, 2, 3]


def response_tokens(k: int) -> list[int]:
    """Sample k's response: its first token names k (so either engine's sample can be traced back)."""
    return [100 + k] + [4] * (k % 3)


class RoundEngine:
    """A vLLM engine stand-in whose answers follow PATTERNS; `seen` (shared by the engines of a step)
    counts each prompt's samples so far, so a later round continues the prompt's sequence."""

    def __init__(self, seen: dict, log: list):
        self.seen, self.log = seen, log
        self.generate_responses = test_openrlhf._Remote(self._generate)
        self.get_num_unfinished_requests = test_openrlhf._Remote(lambda: test_openrlhf.FakeRef(0))

    def _generate(self, *, prompt, label, sampling_params, max_length, hf_tokenizer, num_samples, images):
        i = int(prompt[1:])
        self.log.append((prompt, num_samples))
        out = []
        for _ in range(num_samples):
            k = self.seen.get(i, 0)
            self.seen[i] = k + 1
            score = 1.0 if PATTERNS[i](k) else 0.0
            tokens = PROMPT_TOKENS + response_tokens(k)
            out.append(
                {
                    "prompt": prompt,
                    "label": label,
                    "observation_tokens": tokens,
                    "action_ranges": [(len(PROMPT_TOKENS), len(tokens))],
                    "reward": score,
                    "scores": score,
                    "rollout_log_probs": None,
                    "truncated": k % 5 == 4,
                    "extra_logs": {},
                }
            )
        return test_openrlhf.FakeRef(out)


def openrlhf_step(spec, n: int, monkeypatch):
    """One step of the patched generator + controller on RoundEngine; the stock train_step is replaced by
    the part that matters here: the patched experience maker's advantages on the step's samples.
    Returns (samples, status, {sample position: advantage}, per-round counts, vLLM calls)."""
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
    from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController

    from dynamo.engines.openrlhf import trainer as trainer_mod
    from dynamo.engines.openrlhf.experience import DynamoExperienceMaker

    num_prompts = len(PATTERNS)
    args = openrlhf_args(n=n, batch=num_prompts)
    trainer = make_trainer("grpo", args)
    trainer.spec = spec
    rounds: list[list[int]] = []

    def more(ids, so_far):
        counts = trainer.more_samples(ids, so_far)
        rounds.append(counts.tolist())
        return counts

    hooks = {**trainer.rule_hooks(), **({"more": more} if trainer.rule.sequential else {})}
    gen, _ = make_generator(args, num_prompts, trainer.allocate, **hooks)
    seen, calls = {}, []
    gen.vllm_engines = [RoundEngine(seen, calls), RoundEngine(seen, calls)]
    trainer.samples_generator = gen
    maker = object.__new__(DynamoExperienceMaker)
    maker.strategy, maker.args, maker.kl_ctl = test_openrlhf.ns(args=args), args, FixedKLController(0.0)
    maker.advantage_estimator, maker.tokenizer = "group_norm", test_openrlhf.ns(pad_token_id=0)
    maker.configure(spec, trainer.rule)
    trainer.experience_maker = maker
    advantages: dict[int, float] = {}

    def stock_train_step(self, rollout_samples, global_step):  # make_experience_batch's advantage part
        batches = RemoteExperienceMaker.split_rollout_samples(self.experience_maker, rollout_samples)
        for b in batches:
            b.kl = torch.zeros_like(b.action_mask, dtype=torch.float32)
        for b in self.experience_maker.compute_advantages_and_returns(batches):
            for row, pos in enumerate(b.index):
                advantages[pos] = float(b.advantages[row][b.action_mask[row].bool()][0])
        return {}, global_step + 1

    monkeypatch.setattr(trainer_mod._StockPPOTrainer, "train_step", stock_train_step)
    samples, *_ = gen.generate_samples(**GEN_KW)
    status, _ = trainer.train_step(samples, 0)
    return trainer, samples, status, advantages, rounds, calls


def local_step(spec, n: int):
    """The local engine's `collect` (rounds, down-selection, pool counts, metrics) and `advantages` on the
    same answers: only its sampler (prompts in order) and `_generate` (PATTERNS) are stand-ins."""
    from dynamo.core.stats import PromptStats
    from dynamo.engines.local.rollouts import build_batch
    from dynamo.engines.local.trainer import LocalTrainer, Problem
    from dynamo.generation import Generation

    num_prompts = len(PATTERNS)
    trainer = object.__new__(LocalTrainer)
    trainer.t = test_openrlhf.ns(prompts_per_step=num_prompts, rollouts_per_prompt=n)
    trainer.method, trainer.rule, trainer.stats = spec, make_rule(spec.allocation), PromptStats()
    trainer.problems = [Problem(prompt_id(f"q{i}", str(i)), f"q{i}", [str(i)]) for i in range(num_prompts)]
    trainer.sampler = test_openrlhf.ns(take=lambda count: list(range(count)))
    trainer.tokenizer = test_openrlhf.ns(pad_token_id=0)
    seen: dict[int, int] = {}
    rounds: list[list[int]] = []

    def generate(indices, counts, group_offset, timer):
        rounds.append([int(c) for c in counts])
        gens, correct = [], []
        for position, (i, count) in enumerate(zip(indices, counts)):
            for _ in range(int(count)):
                k = seen.get(i, 0)
                seen[i] = k + 1
                gens.append(Generation(position, PROMPT_TOKENS, response_tokens(k), "", truncated=k % 5 == 4))
                correct.append(PATTERNS[i](k))
        ids = [trainer.problems[i].id for i in indices]
        return build_batch(gens, ids, correct, pad_token_id=0, max_new_tokens=8, group_offset=group_offset)

    trainer._generate = generate
    batch, info = trainer.collect(defaultdict(float))
    return batch, info, trainer.advantages(batch), rounds


def sample_key(group: int, tokens: torch.Tensor) -> tuple[int, int]:
    """(prompt position, k: the sample's place in its prompt's generation order) from its tokens."""
    return group, int(tokens[len(PROMPT_TOKENS)]) - 100


ROUNDS_CASES = {
    "reinforce-ada": [[8] * 6, [8, 8, 8, 0, 0, 8], [8, 0, 8, 0, 0, 8], [8, 0, 8, 0, 0, 8]],
    "reinforce-ada-pos": [[8] * 6, [8, 0, 0, 0, 0, 8], [8, 0, 0, 0, 0, 8], [8, 0, 0, 0, 0, 0]],
    "pods": None,
}


@pytest.mark.parametrize("name", sorted(ROUNDS_CASES))
def test_selection_and_rounds_match_the_local_engine(fake_ray, monkeypatch, name):  # noqa: F811
    spec = get_method(name)
    n = 8 if name == "pods" else 4  # PODS keeps m = 2 of 8; Reinforce-Ada rounds of 2n = 8, at most 4
    trainer, samples, status, adv, rounds, calls = openrlhf_step(spec, n, monkeypatch)
    batch, info, local_adv, local_rounds = local_step(spec, n)
    rule = make_rule(spec.allocation)

    # The same rounds: per-prompt counts of each round, and only prompts with a count are sent.
    if rule.sequential:
        assert rounds[:-1] == local_rounds == ROUNDS_CASES[name]  # the last call answered all zero
        assert not any(rounds[-1])
        assert sorted(calls) == sorted((f"q{i}", c) for r in rounds for i, c in enumerate(r) if c)
    else:
        assert local_rounds == [[n] * len(PATTERNS)] and sorted(c for _, c in calls) == [n] * len(PATTERNS)
    generated = [sum(c for p, c in calls if p == f"q{i}") for i in range(len(PATTERNS))]
    assert max(generated) <= rule.bounds(n)[1]  # the cap per prompt holds

    # The same kept samples (by place in the group's generation order), pool counts and advantages.
    ours = {sample_key(s.dynamo_group, s.sequences[0]): pos for pos, s in enumerate(samples)}
    local = {sample_key(int(batch.group_ids[r]), batch.input_ids[r]): r for r in range(batch.num_samples)}
    assert sorted(ours) == sorted(local)
    trained = rule.trained_per_prompt(n)
    assert len(samples) == len(PATTERNS) * trained == (len(PATTERNS) * 2 if name == "pods" else len(PATTERNS) * n)
    for g in range(len(PATTERNS)):
        assert len([k for group, k in ours if group == g]) == trained
    for key, pos in ours.items():
        s, r = samples[pos], local[key]
        pool = (sum(PATTERNS[key[0]](k) for k in range(generated[key[0]])), generated[key[0]])
        assert s.dynamo_pool == pool == (int(batch.pool.correct[r]), int(batch.pool.size[r]))
        assert adv[pos] == pytest.approx(float(local_adv[r]), abs=1e-6)
    assert any(abs(a) > 0.1 for a in adv.values())  # the batch has signal
    if name == "reinforce-ada":  # the pool baseline, not the kept group's mean: q1 keeps 2 of 16 correct...
        pos = ours[1, 5]
        assert adv[pos] == pytest.approx(1 - 2 / 16)  # ... so a kept correct sample gets 1 - 2/16, not 1/2

    # Step metrics: cost over every generated sample, rollout metrics as the local engine logs them,
    # tokens trained over the kept samples only.
    assert status[M.RESPONSES] == sum(generated)
    ids = [prompt_id(f"q{i}", str(i)) for i in range(len(PATTERNS))]
    assert trainer.stats.counts(ids)[1].tolist() == generated  # the statistics count every graded sample
    for key in (M.N_TOTAL, M.N_MIN, M.N_MAX, M.N_STD, M.COLD_SHARE, M.ZERO_VARIANCE_SHARE, M.PROMPTS):
        assert status[key] == info[key], key
    for key in (M.RESPONSES, M.TOKENS_GENERATED, M.TOKENS_TRAINED, M.ACCURACY, M.REWARD_MEAN):
        assert status[key] == pytest.approx(info[key]), key
    for key in (M.INFORMATIVE_SHARE, M.INFORMATIVE_SAMPLE_SHARE, M.RESPONSE_LENGTH, M.TRUNCATED_SHARE):
        assert status[key] == pytest.approx(info[key]), key
    trained_tokens = sum(float(s.action_mask.sum()) for s in samples)
    assert status[M.TOKENS_TRAINED] == trained_tokens < status[M.TOKENS_GENERATED]
    if rule.sequential:
        assert status[M.SAMPLING_ROUNDS] == info[M.SAMPLING_ROUNDS] == len(ROUNDS_CASES[name])
    else:
        assert M.SAMPLING_ROUNDS not in status and M.SAMPLING_ROUNDS not in info
