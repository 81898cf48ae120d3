"""Local engine: alignment under non-uniform allocation, budget, equivalences, determinism, resume.

Runs a 1-layer tiny model for a few steps; every check compares whole trajectories
(metrics + final weights), not summaries.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest
import torch

from dynamo.config import config_from_dict
from dynamo.core.shaping import groups_with_spread
from dynamo.core.stats import PromptStats
from dynamo.engines.local import trainer as trainer_mod
from dynamo.engines.local.policy import token_logprobs
from dynamo.engines.local.trainer import LocalTrainer, Problem
from dynamo.generation import Generation
from dynamo.methods import get_method
from dynamo.models.tiny import write_tiny_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "tiny"
    write_tiny_model(out, seed=0, layers=1, hidden=32, heads=2)
    return str(out)


def problems(count: int = 16) -> list[Problem]:
    return [
        Problem(id=f"p{i}", prompt=f"Q: {i % 5}+{i // 5}\nA: ", answers=[str(i % 5 + i // 5)])
        for i in range(count)
    ]


def make_cfg(**train):
    base = {
        "steps": 3,
        "prompts_per_step": 4,
        "rollouts_per_prompt": 4,
        "mini_batch_prompts": 2,
        "micro_batch_sequences": 8,
        "max_new_tokens": 6,
        "checkpoint_every": 1,
        "lr": 1e-3,
    }
    return config_from_dict({"seeds": [1], "train": {**base, **train}})


def scripted_generation(tokenizer, prompt_index: int, prompt: str, text: str) -> Generation:
    """A Generation as hf_generate returns it, for a response text chosen by the test."""
    return Generation(
        prompt_index=prompt_index,
        prompt_ids=tokenizer(prompt)["input_ids"],
        response_ids=tokenizer(text)["input_ids"],
        text=text,
        truncated=False,
    )


class RandomAnswerGenerator:
    """Stands in for hf_generate with answers drawn from torch's global RNG (so seeds and the RNG state
    saved in checkpoints matter): right or wrong, of varying length. An untrained tiny model never
    answers right, so without this every advantage would be 0 and every update a no-op."""

    def __call__(self, model, tokenizer, prompts, counts, **kw):
        out = []
        for i, (prompt, count) in enumerate(zip(prompts, counts)):
            gold = prompt.split("Q: ")[1].split("\n")[0]
            gold = str(sum(int(x) for x in gold.split("+")))
            for _ in range(count):
                right, extra = torch.randint(0, 2, (1,)).item(), torch.randint(0, 3, (1,)).item()
                text = f"\\boxed{{{gold if right else '-7'}}}" + "!" * extra
                out.append(scripted_generation(tokenizer, i, prompt, text))
        return out


def run(tmp_path, tiny_model, method, cfg=None, seed=1, name="run", real_generation=False):
    cfg = cfg or make_cfg()
    trainer = LocalTrainer(cfg, method, seed, tmp_path / name, tiny_model, problems(), show_progress=False)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.MonkeyPatch.context() as mp:
        if not real_generation:
            mp.setattr(trainer_mod, "hf_generate", RandomAnswerGenerator())
        trainer.train()
    if not real_generation:  # the comparison below is only meaningful if training moved the weights
        assert any(not torch.equal(initial[k], v) for k, v in trainer.model.state_dict().items())
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows], trainer.model.state_dict()


def assert_same_trajectory(a, b):
    rows_a, weights_a = a
    rows_b, weights_b = b
    assert rows_a == rows_b
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key


# -- alignment and budget under non-uniform allocation --------------------------------------


class ScriptedGenerator:
    """Stands in for hf_generate: prompt i answers correctly on its first round(frac_i * n_i) samples,
    so each response's correctness is known from its text alone and varies by prompt."""

    def __init__(self, tokenizer, problems_by_prompt):
        self.tokenizer, self.by_prompt = tokenizer, problems_by_prompt
        self.log: list[tuple[str, int, int]] = []  # (prompt id, count, number correct)

    def __call__(self, model, tokenizer, prompts, counts, **kw):
        out = []
        for i, (prompt, count) in enumerate(zip(prompts, counts)):
            problem = self.by_prompt[prompt]
            frac = [0.0, 0.25, 0.5, 1.0][int(problem.id[1:]) % 4]
            n_right = round(frac * count)
            for j in range(count):
                text = f"\\boxed{{{problem.answers[0]}}}" if j < n_right else "\\boxed{-7}"
                out.append(scripted_generation(tokenizer, i, prompt, text))
            self.log.append((problem.id, count, n_right))
        return out


def test_alignment_budget_and_stats_under_nonuniform_allocation(tmp_path, tiny_model, monkeypatch):
    cfg = make_cfg(prompts_per_step=8, rollouts_per_prompt=4)
    trainer = LocalTrainer(
        cfg, get_method("dynamo"), 1, tmp_path / "r", tiny_model, problems(), show_progress=False
    )
    fake = ScriptedGenerator(trainer.tokenizer, {p.prompt: p for p in problems()})
    monkeypatch.setattr(trainer_mod, "hf_generate", fake)
    saw_nonuniform = False
    for _ in range(6):
        timer = defaultdict(float)
        batch, info = trainer.collect(timer)
        counts = Counter(batch.group_ids.tolist())
        assert sum(counts.values()) == info["rollout/n_total"] == 8 * 4  # budget B = N * n, exactly
        assert min(counts.values()) >= 2 and max(counts.values()) <= 6  # bounds n/2 .. 3n/2
        saw_nonuniform |= len(set(counts.values())) > 1
        for s in range(batch.num_samples):
            # The sample's prompt id is the one its group was generated for ...
            group = batch.group_ids[s].item()
            assert batch.prompt_ids[s] == batch.prompt_ids[(batch.group_ids == group).nonzero()[0].item()]
        # ... and its reward is its own text graded against its own prompt's answer.
        per_group = defaultdict(list)
        for s in range(batch.num_samples):
            per_group[batch.group_ids[s].item()].append((batch.prompt_ids[s], batch.correct[s].item()))
        step_log = fake.log[-8:]
        for (pid, count, n_right), group in zip(step_log, sorted(per_group)):
            assert [p for p, _ in per_group[group]] == [pid] * count
            assert sum(c for _, c in per_group[group]) == n_right
        # Samples in groups with spread, counted from what was generated: under unequal n_i the
        # sample-weighted share differs from the group share, and is what allocation moves.
        spread = [(count, 0 < n_right < count) for _, count, n_right in step_log]
        assert info["rollout/informative_sample_share"] == pytest.approx(sum(c for c, s in spread if s) / 32)
        assert info["rollout/informative_share"] == pytest.approx(sum(s for _, s in spread) / 8)
    assert saw_nonuniform, "allocation never departed from uniform: the test proves nothing"
    # Statistics count exactly what each prompt received and got right, across all steps.
    expected = PromptStats()
    for pid, count, n_right in fake.log:
        expected = expected.updated([pid] * count, [1.0] * n_right + [0.0] * (count - n_right))
    ids = sorted({pid for pid, _, _ in fake.log})
    assert [a.tolist() for a in trainer.stats.counts(ids)] == [a.tolist() for a in expected.counts(ids)]


def test_dynamic_sampling_keeps_only_groups_with_spread(tmp_path, tiny_model, monkeypatch):
    trainer = LocalTrainer(
        make_cfg(), get_method("dapo"), 1, tmp_path / "r", tiny_model, problems(), show_progress=False
    )
    monkeypatch.setattr(
        trainer_mod, "hf_generate", ScriptedGenerator(trainer.tokenizer, {p.prompt: p for p in problems()})
    )
    batch, info = trainer.collect(defaultdict(float))
    assert batch.num_samples > 0
    assert bool(groups_with_spread(batch.group_ids, batch.correct).all())  # DAPO keys on correctness
    # Refilled up to N prompts, unless the refill rounds ran out first.
    assert info["rollout/kept_groups"] == 4 or info["rollout/generation_rounds"] == 3
    assert info["rollout/kept_groups"] == torch.unique(batch.group_ids).numel()


# -- equivalences, determinism and resume: whole trajectories --------------------------------


def test_real_generation_same_seed_same_result(tmp_path, tiny_model):
    """The real path (hf_generate + math-verify grading) is deterministic for a seed too."""
    a = run(tmp_path, tiny_model, get_method("dynamo"), name="a", real_generation=True)
    b = run(tmp_path, tiny_model, get_method("dynamo"), name="b", real_generation=True)
    assert_same_trajectory(a, b)
    assert all(r["rollout/n_total"] == 16 for r in a[0])


def test_same_seed_same_result_and_different_seed_differs(tmp_path, tiny_model):
    a = run(tmp_path, tiny_model, get_method("dynamo"), name="a")
    b = run(tmp_path, tiny_model, get_method("dynamo"), name="b")
    assert_same_trajectory(a, b)
    c = run(tmp_path, tiny_model, get_method("dynamo"), seed=2, name="c")
    assert a[0] != c[0]


def test_allocation_and_modulation_off_is_grpo(tmp_path, tiny_model):
    grpo = run(tmp_path, tiny_model, get_method("grpo"), name="grpo")
    off = get_method(
        "dynamo",
        {"allocation": {"kind": "uniform"}, "modulation": {"compensation": False, "stabilization": False}},
    )
    assert_same_trajectory(grpo, run(tmp_path, tiny_model, off, name="off"))


def test_unit_modulation_factors_equal_no_modulation(tmp_path, tiny_model):
    """alpha = 0 and lambda_min = 1 make every factor exactly 1: the run must equal GRPO bit for bit."""
    grpo = run(tmp_path, tiny_model, get_method("grpo"), name="grpo")
    unit = get_method("dynamo-uniform", {"modulation": {"alpha": 0.0, "lambda_min": 1.0}})
    rows, weights = run(tmp_path, tiny_model, unit, name="unit")
    assert all(r["modulation/beta_comp"] == 1.0 and r["modulation/beta_stab"] == 1.0 for r in rows)
    strip = [{k: v for k, v in r.items() if not k.startswith("modulation/")} for r in rows]
    assert_same_trajectory(
        (strip, weights),
        ([{k: v for k, v in r.items() if not k.startswith("modulation/")} for r in grpo[0]], grpo[1]),
    )


def test_modulation_changes_the_update(tmp_path, tiny_model):
    """The converse: with DynaMO's factors on, the trajectory must differ from GRPO's."""
    grpo = run(tmp_path, tiny_model, get_method("grpo"), name="grpo")
    mod = run(tmp_path, tiny_model, get_method("dynamo-uniform"), name="mod")
    assert any(not torch.equal(grpo[1][k], mod[1][k]) for k in grpo[1])


def run_killed_in_step_four(tmp_path, tiny_model, method, cfg, monkeypatch) -> None:
    """Run `killed` until its update of step 4 raises, as a kill would; the trainer is restored after."""
    original = LocalTrainer.update

    def crash_on_step_four(self, batch, timer):
        if self.step == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, batch, timer)

    with monkeypatch.context() as patch:
        patch.setattr(LocalTrainer, "update", crash_on_step_four)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, tiny_model, method, cfg=cfg, name="killed")


def test_killed_run_resumes_to_the_same_result(tmp_path, tiny_model, monkeypatch):
    cfg = make_cfg(steps=4, checkpoint_every=2)
    method = get_method("dynamo")
    uninterrupted = run(tmp_path, tiny_model, method, cfg=cfg, name="full")
    run_killed_in_step_four(tmp_path, tiny_model, method, cfg, monkeypatch)
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # steps 1-3 logged; the checkpoint holds step 2
    assert json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())["step"] == 2
    resumed = run(tmp_path, tiny_model, method, cfg=cfg, name="killed")
    assert_same_trajectory(uninterrupted, resumed)


def test_logprobs_match_generate_scores(tiny_model):
    """The training forward pass (right padding) scores sampled tokens exactly as generate did (left padding)."""
    from dynamo.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model)
    prompts = ["Q: 1+2\nA: ", "Q: 12+30\nA: "]
    enc = tok(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(0)
    out = model.generate(
        **enc, do_sample=True, max_new_tokens=6, output_logits=True, return_dict_in_generate=True, top_k=0
    )
    gen_logp = torch.stack([torch.log_softmax(s.float(), -1) for s in out.logits], 1)  # raw logits, unprocessed
    new_tokens = out.sequences[:, enc["input_ids"].shape[1] :]
    expected = gen_logp.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
    for i, prompt in enumerate(prompts):
        tokens = new_tokens[i].tolist()
        length = tokens.index(tok.eos_token_id) + 1 if tok.eos_token_id in tokens else len(tokens)
        ids = tok(prompt)["input_ids"] + tokens[:length]
        logp, _ = token_logprobs(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))
        torch.testing.assert_close(logp[0, -length:], expected[i, :length], atol=1e-5, rtol=1e-5)


# -- logged metrics and cost -----------------------------------------------------------------


def test_logged_actor_loss_is_the_mini_batch_loss_once(tmp_path, tiny_model, monkeypatch):
    """At the first update logp = old_logp, so the token-mean PPO loss is -sum(A * tokens) / tokens.
    It used to be logged twice over (policy_loss's own "loss" added to an explicit sum)."""
    cfg = make_cfg(steps=1, mini_batch_prompts=4, micro_batch_sequences=5, ppo_epochs=1)
    trainer = LocalTrainer(cfg, get_method("grpo"), 1, tmp_path / "r", tiny_model, problems(), show_progress=False)
    monkeypatch.setattr(trainer_mod, "hf_generate", RandomAnswerGenerator())
    seen = {}
    original = trainer.update

    def update(batch, timer):
        seen["batch"] = batch
        return original(batch, timer)

    monkeypatch.setattr(trainer, "update", update)
    trainer.train()
    row = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[0])
    batch = seen["batch"]
    adv = trainer.advantages(batch)
    tokens = batch.response_mask.sum(1)
    expected = -float((adv * tokens).sum() / tokens.sum())
    assert abs(expected) > 1e-3  # the check below can tell 1x from 2x
    assert row["actor/loss"] == pytest.approx(expected, abs=1e-5)
    assert row["actor/pg_loss"] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("method", ["grpo", "dapo"])
def test_run_cost_counts_what_was_generated_and_trained(tmp_path, tiny_model, method):
    from dynamo import metrics_names as M
    from dynamo.engines.train import local_cost

    run(tmp_path, tiny_model, get_method(method), name=method)
    rows = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    cost = local_cost(tmp_path / method / "metrics.jsonl", on_gpu=False)
    assert set(cost) == set(M.COST_FIELDS)
    assert cost["prompts_seen"] == sum(4 * r.get(M.GENERATION_ROUNDS, 1) for r in rows)
    assert cost["responses_generated"] == 4 * cost["prompts_seen"]  # n = 4 per prompt, refills too
    assert cost["tokens_generated"] >= cost["tokens_trained"] > 0
    if method == "grpo":
        assert cost["tokens_generated"] == cost["tokens_trained"]
    assert cost["gpu_seconds"] == 0.0
    assert set(cost["seconds"]) == {*M.PHASES, "total"}
    assert cost["seconds"]["total"] == pytest.approx(sum(r[M.TIME_STEP] for r in rows))
    assert 0 < cost["seconds"]["train"] < cost["seconds"]["total"]


def test_killed_clip_cov_run_resumes_to_the_same_random_picks(tmp_path, tiny_model, monkeypatch):
    """Clip-Cov's random pick draws from the trainer's generator; its state is in the checkpoint.
    A dense band (every token a candidate, 20% picked) makes the picks matter at this size."""
    cfg = make_cfg(steps=4, checkpoint_every=2)
    method = get_method("clip-cov", {"covariance": {"ratio": 0.2, "clip_lb": -1e9, "clip_ub": 1e9}})
    uninterrupted = run(tmp_path, tiny_model, method, cfg=cfg, name="full")
    assert all(r["objective/clip_cov_share"] > 0 for r in uninterrupted[0])
    run_killed_in_step_four(tmp_path, tiny_model, method, cfg, monkeypatch)
    assert_same_trajectory(uninterrupted, run(tmp_path, tiny_model, method, cfg=cfg, name="killed"))
