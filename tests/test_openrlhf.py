"""The openrlhf engine against the real installed OpenRLHF 0.11.2 code, on CPU.

Only flash_attn and vllm are stubbed (tests/openrlhf_stubs.py); ray, deepspeed, transformers and
OpenRLHF itself are the real packages. Ray calls inside the generator are replaced by fakes that
return results *out of order*, as vLLM actors do. GPU-only paths (DeepSpeed engines, vLLM,
NCCL, packed samples) are not exercised here; docs/OPENRLHF_ENGINE.md lists them.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

import openrlhf_stubs
import pytest
import torch

openrlhf_stubs.install()
try:
    import openrlhf  # noqa: F401
    from openrlhf.trainer.ppo_utils.experience import Experience
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
    from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController
except ImportError as err:  # pragma: no cover - CI installs it
    pytest.skip(
        f"openrlhf 0.11.2 is not importable ({err}); install it with "
        "`pip install --no-deps openrlhf==0.11.2` plus ray, deepspeed, peft, aiohttp, torchdata, pylatexenc",
        allow_module_level=True,
    )

import ray  # noqa: E402

from dynamo.core.advantages import group_advantages  # noqa: E402
from dynamo.core.losses import policy_loss  # noqa: E402
from dynamo.core.modulation import modulation_factors  # noqa: E402
from dynamo.core.rules import make_rule  # noqa: E402
from dynamo.core.stats import PromptStats  # noqa: E402
from dynamo.engines.local.policy import token_logprobs  # noqa: E402
from dynamo.engines.openrlhf import guards  # noqa: E402
from dynamo.engines.openrlhf.actor import DynamoActorTrainer, windowed_global_norm  # noqa: E402
from dynamo.engines.openrlhf.experience import DynamoExperienceMaker, pool_of_samples  # noqa: E402
from dynamo.engines.openrlhf.rollout import DynamoSamplesGenerator, prompt_id  # noqa: E402
from dynamo.engines.openrlhf.trainer import DynamoPPOTrainer  # noqa: E402
from dynamo.methods import get_method  # noqa: E402


def ns(**kw) -> SimpleNamespace:
    return SimpleNamespace(**{k: ns(**v) if isinstance(v, dict) else v for k, v in kw.items()})


def openrlhf_args(n: int = 4, batch: int = 4, **extra) -> SimpleNamespace:
    """The parts of OpenRLHF's hierarchical args namespace the patched code reads."""
    base = {
        "rollout": {
            "n_samples_per_prompt": n,
            "batch_size": batch,
            "micro_batch_size": 2,
            "max_new_tokens": 8,
            "vllm_generate_batch_size": None,
        },
        "train": {"dynamic_batch_enable": False, "batch_size": 8, "max_epochs": 1, "async_enable": False},
        "algo": {
            "advantage": {"estimator": "group_norm", "is_correction_level": "off", "gamma": 1.0},
            "dynamic_filtering_enable": False,
            "dynamic_filtering_range": (0.0, 1.0),
            "kl": {"use_loss": False, "init_coef": 0.0},
        },
        "reward": {"clip_range": (-10, 10), "overlong_buffer_len": None, "stop_properly_penalty_coef": None},
        "vllm": {"enable_sleep": False},
        "actor": {
            "policy_loss_type": "ppo",
            "eps_clip_low_high": (0.2, 0.2),
            "dual_clip": 10.0,
            "loss_agg_mode": "token-mean",
            "entropy_coef": None,
            "aux_loss_coef": 0.0,
        },
        "data": {"max_len": 64},
        "ckpt": {"save_steps": 1, "path": "/nonexistent", "load_enable": False, "max_num": 1},
        "logger": {"logging_steps": 1},
    }
    for key, value in extra.items():
        base[key] = {**base[key], **value}
    return ns(**base)


# ---------------------------------------------------------------------------------------------
# Fake vLLM engines and Ray calls: results come back in a random order.


class FakeRef:
    def __init__(self, value):
        self.value = value


class _Remote:
    def __init__(self, fn):
        self.remote = fn


class FakeEngine:
    """generate_responses(prompt, num_samples): sample j of prompt 'q<i>' is correct iff j < i % (n+1)."""

    def __init__(self, log: list):
        self.log = log
        self.generate_responses = _Remote(self._generate)
        self.get_num_unfinished_requests = _Remote(lambda: FakeRef(0))

    def _generate(self, *, prompt, label, sampling_params, max_length, hf_tokenizer, num_samples, images):
        self.log.append((prompt, num_samples))
        correct = int(prompt[1:]) % 5
        out = []
        for j in range(num_samples):
            score = 1.0 if j < correct else 0.0
            tokens = [1, 2, 3] + [4 + j % 3] * (1 + j % 4)
            out.append(
                {
                    "prompt": prompt,
                    "label": label,
                    "observation_tokens": tokens,
                    "action_ranges": [(3, len(tokens))],
                    "reward": score,
                    "scores": score,
                    "rollout_log_probs": None,
                    "truncated": False,
                    "extra_logs": {},
                }
            )
        return FakeRef(out)


def install_fake_ray(monkeypatch) -> None:
    rng = random.Random(0)

    def wait(refs, num_returns=1, timeout=None):
        refs = list(refs)
        k = rng.randrange(len(refs))  # any pending result may finish first
        return [refs[k]], refs[:k] + refs[k + 1 :]

    def get(x):
        return [r.value for r in x] if isinstance(x, list) else x.value

    monkeypatch.setattr(ray, "wait", wait)
    monkeypatch.setattr(ray, "get", get)


@pytest.fixture
def fake_ray(monkeypatch):
    install_fake_ray(monkeypatch)


def make_generator(args, num_prompts: int, allocate, *, max_steps: int = 0, rounds: int = 3, **hooks):
    """The patched generator on two FakeEngines; `hooks`: the rule's callables (DynamoPPOTrainer.rule_hooks)."""
    gen = object.__new__(DynamoSamplesGenerator)
    log: list = []
    gen.args, gen.strategy, gen.tokenizer = args, ns(args=args), None
    gen.vllm_engines = [FakeEngine(log), FakeEngine(log)]
    gen.prompts_dataloader = [(["d"], [f"q{i}"], [str(i)], [None]) for i in range(num_prompts)]
    gen.eval_dataloader = None
    gen.configure(allocate, max_steps, rounds, **hooks)
    return gen, log


GEN_KW = {"do_sample": True, "max_len": 64, "max_new_tokens": 8, "temperature": 1.0, "top_p": 1.0}


# ---------------------------------------------------------------------------------------------
# (a) per-prompt rollout counts, exact budget, group tags, statistics alignment


def test_dispatch_sends_each_prompt_its_own_count_and_keeps_the_budget(fake_ray):
    n, num_prompts = 4, 6
    counts = [2, 6, 3, 5, 4, 4]  # sum 24 = 6 * 4
    args = openrlhf_args(n=n, batch=num_prompts)
    gen, log = make_generator(args, num_prompts, lambda ids: counts)
    samples, _, consumed, _ = gen.generate_samples(**GEN_KW)

    assert consumed == num_prompts and len(samples) == sum(counts) == num_prompts * n
    assert sorted(log) == sorted((f"q{i}", c) for i, c in enumerate(counts))  # one request per prompt, its n_i
    by_group = defaultdict(list)
    for s in samples:
        by_group[s.dynamo_group].append(s)
    assert {g: len(v) for g, v in by_group.items()} == dict(enumerate(counts))
    for g, members in by_group.items():  # a group's samples are all its own prompt's, with its id
        assert {m.prompts[0] for m in members} == {f"q{g}"}
        assert {m.dynamo_prompt_id for m in members} == {prompt_id(f"q{g}", str(g))}
    assert gen.steps_done == 1


def test_allocation_must_keep_the_exact_budget(fake_ray):
    gen, _ = make_generator(openrlhf_args(n=4, batch=3), 3, lambda ids: [4, 4, 3])
    with pytest.raises(RuntimeError, match="exactly 12 in total"):
        gen.generate_samples(**GEN_KW)


def test_statistics_stay_aligned_when_results_arrive_out_of_order(fake_ray):
    n, num_prompts = 4, 5
    counts = [6, 2, 5, 3, 4]
    gen, _ = make_generator(openrlhf_args(n=n, batch=num_prompts), num_prompts, lambda ids: counts)
    samples, *_ = gen.generate_samples(**GEN_KW)
    # Completion order interleaved the prompts (the fake wait picks a random pending result) ...
    assert [s.dynamo_group for s in samples] != sorted(s.dynamo_group for s in samples)
    stats = PromptStats().updated(*zip(*gen.graded))
    ids = [prompt_id(f"q{i}", str(i)) for i in range(num_prompts)]
    k, g = stats.counts(ids)
    # ... yet every prompt is credited with exactly its own n_i responses and its own successes.
    assert g.tolist() == counts
    assert k.tolist() == [min(i % 5, c) for i, c in enumerate(counts)]


def test_dapo_refill_replaces_filtered_groups_with_a_cap(fake_ray):
    n = 4
    args = openrlhf_args(n=n, batch=4, algo={"dynamic_filtering_enable": True})
    # q0 and q5 solve nothing, q4 and q9 everything (4 % 5 = 4 = n): filtered; the others pass.
    gen, log = make_generator(args, 12, lambda ids: [n] * len(ids), rounds=2)
    samples, pass_rate, consumed, _ = gen.generate_samples(**GEN_KW)
    assert all(
        0 < sum(s.scores.item() for s in samples if s.dynamo_group == g) < n
        for g in {s.dynamo_group for s in samples}
    )
    assert len(log) == consumed <= 4 * 2  # at most (rounds - 1) * N = 4 refills
    assert len(gen.graded) == n * consumed  # filtered groups still count for the statistics


def test_generator_stops_after_max_steps(fake_ray):
    gen, _ = make_generator(openrlhf_args(n=2, batch=2), 10, lambda ids: [2] * len(ids), max_steps=2)
    first, second = gen.generate_samples(**GEN_KW), gen.generate_samples(**GEN_KW)
    assert first[0] and first[3] is False  # 10 prompts, 2 per step: the data is not used up
    assert second[0] and second[3] is True  # step 2 of 2 has samples and tells the trainer to stop
    assert gen.generate_samples(**GEN_KW) == ([], None, 0, True)


def make_trainer(spec_name: str, args) -> DynamoPPOTrainer:
    trainer = object.__new__(DynamoPPOTrainer)
    trainer.args, trainer.strategy = args, ns(args=args)
    trainer.spec = get_method(spec_name)
    trainer.stats = PromptStats()
    trainer.options = ns(run_dir="", max_steps=0)
    trainer.allocation_log = {}
    return trainer


def test_trainer_allocation_uses_history_and_budget(fake_ray):
    n, num_prompts = 16, 8
    args = openrlhf_args(n=n, batch=num_prompts)
    trainer = make_trainer("dynamo", args)
    gen, log = make_generator(args, 100, trainer.allocate)
    trainer.samples_generator = gen
    gen.generate_samples(**GEN_KW)  # cold start: uniform
    assert Counter(c for _, c in log) == {n: num_prompts}
    trainer.update_stats()
    # Re-serve the same prompts: their history (k_i = i % 5 of n) now drives the allocation.
    gen._dataloader_iter = iter(gen.prompts_dataloader[:num_prompts])
    log.clear()
    gen.generate_samples(**GEN_KW)
    counts = {p: c for p, c in log}
    assert sum(counts.values()) == num_prompts * n
    assert min(counts.values()) >= 8 and max(counts.values()) <= 24
    # Always-wrong prompts (q0, q5) get the floor, mixed ones more.
    assert counts["q0"] == counts["q5"] == 8 and counts["q2"] > 8


def test_prompt_stats_are_saved_and_restored_with_the_checkpoint(fake_ray, monkeypatch):
    args = openrlhf_args(n=4, batch=4)
    saved = {}

    class Group:
        def async_run_method(self, method_name, **kw):
            if method_name == "save_checkpoint":
                saved.update(kw["client_states"])
                return []
            return [FakeRef(dict(saved))]  # get_checkpoint_states

    trainer = make_trainer("dynamo", args)
    trainer.actor_model_group, trainer.critic_model_group = Group(), None
    trainer.wandb_logger = trainer.tensorboard_logger = None
    trainer.best_eval_metric_key, trainer.best_eval_metric_value, trainer._latest_eval_metric_value = "", 0.0, None
    trainer.samples_generator = ns(steps_done=3)
    trainer.stats = PromptStats().updated(["a", "a", "b"], [1.0, 0.0, 1.0])
    trainer.save_logs_and_checkpoints(
        3, {}, {"episode": 0, "global_step": 3, "total_consumed_prompts": 12, "data_loader_state_dict": {}}
    )
    assert saved["dynamo_prompt_stats"] == trainer.stats.to_dict()

    restored = make_trainer("dynamo", openrlhf_args(n=4, batch=4, ckpt={"load_enable": True, "path": "/"}))
    restored.actor_model_group = Group()
    restored.samples_generator = ns(steps_done=0)
    monkeypatch.setattr("os.path.exists", lambda p: True)
    states = restored.init_checkpoint_states()
    assert states["global_step"] == 3 and restored.stats == trainer.stats
    assert restored.samples_generator.steps_done == 3


# ---------------------------------------------------------------------------------------------
# (b) group advantages by group id


def single_sample(reward: float, length: int) -> Experience:
    seq = torch.arange(2, 2 + 3 + length).unsqueeze(0)
    action_mask = torch.zeros(1, seq.shape[1] - 1, dtype=torch.long)
    action_mask[0, 2 : 2 + length] = 1
    return Experience(
        sequences=seq,
        attention_mask=torch.ones_like(seq),
        action_mask=action_mask,
        rewards=torch.tensor([reward]),
        scores=torch.tensor([reward]),  # the reward function's score: correctness (no shaping here)
        response_length=torch.tensor([length]),
        info={},
    )


def make_experiences(rewards_by_group: dict[int, list[float]], seed: int = 0):
    """Single-sample experiences in shuffled (completion) order, split into micro-batches by the stock code."""
    samples = []
    for g, rewards in rewards_by_group.items():
        for j, r in enumerate(rewards):
            s = single_sample(r, 1 + (j + g) % 3)
            s.dynamo_group = g
            samples.append(s)
    random.Random(seed).shuffle(samples)
    args = openrlhf_args(n=4, batch=len(rewards_by_group))
    maker = object.__new__(DynamoExperienceMaker)
    maker.strategy, maker.args, maker.kl_ctl = ns(args=args), args, FixedKLController(0.0)
    maker.advantage_estimator, maker.tokenizer = "group_norm", ns(pad_token_id=0)
    spec = get_method("dynamo")
    maker.configure(spec, make_rule(spec.allocation))
    maker.group_of_position = torch.tensor([s.dynamo_group for s in samples])
    maker.pool_of_position = pool_of_samples(samples)
    batches = RemoteExperienceMaker.split_rollout_samples(maker, samples)  # stock: index = rollout position
    for b in batches:
        b.kl = torch.zeros_like(b.action_mask, dtype=torch.float32)
    return maker, samples, batches


def test_unequal_groups_get_core_and_hand_computed_advantages():
    groups = {0: [1.0, 0.0, 0.0], 1: [1.0, 1.0, 0.0, 1.0, 0.0], 2: [1.0, 1.0], 3: [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]}
    maker, samples, batches = make_experiences(groups)
    out = maker.compute_advantages_and_returns(batches)

    got = {}
    for b in out:
        for row, pos in enumerate(b.index):
            mask = b.action_mask[row].bool()
            values = b.advantages[row][mask]
            # One value over the response (stock also fills prompt positions; the loss masks them).
            assert torch.allclose(values, values[0].expand_as(values))
            got[pos] = float(values[0])
    rewards = torch.tensor([float(s.rewards[0]) for s in samples])
    ids = torch.tensor([s.dynamo_group for s in samples])
    core = group_advantages(rewards, ids, estimator="grpo", eps=1e-6)
    assert torch.allclose(torch.tensor([got[i] for i in range(len(samples))]), core, atol=1e-6)
    assert maker.advantage_abs_mean == pytest.approx(float(core.abs().mean()), abs=1e-6)  # the step's metric
    # By hand, group 0 = [1, 0, 0]: mean 1/3, unbiased std sqrt(1/3); group 2 has no spread -> 0.
    std0 = (1 / 3) ** 0.5
    for i, s in enumerate(samples):
        r = float(s.rewards[0])
        if s.dynamo_group == 0:
            assert got[i] == pytest.approx((r - 1 / 3) / (std0 + 1e-6), abs=1e-5)
        if s.dynamo_group == 2:
            assert got[i] == 0.0


def test_stock_reshape_would_mix_unequal_groups():
    """Why the patch exists: stock regroups [3, 5] samples as [4, 4] without an error."""
    groups = {0: [1.0, 0.0, 0.0], 1: [1.0, 1.0, 1.0, 1.0, 0.0]}
    maker, samples, batches = make_experiences(groups, seed=1)
    stock = [dataclasses.replace(b, info=dict(b.info)) for b in batches]
    for b in stock:
        b.rewards = b.rewards.clone()
    RemoteExperienceMaker.compute_advantages_and_returns(maker, stock)  # runs without complaint ...
    ours = maker.compute_advantages_and_returns(batches)
    stock_adv = torch.cat([b.advantages.sum(-1) for b in stock])
    ours_adv = torch.cat([b.advantages.sum(-1) for b in ours])
    assert not torch.allclose(stock_adv, ours_adv)  # ... and gets other numbers


# ---------------------------------------------------------------------------------------------
# (c) the patched training step equals the local engine's core computation


def tiny_qwen2(dtype: torch.dtype) -> torch.nn.Module:
    """A seeded 2-layer Qwen2 with eager attention (the same numerics in both engines' tests)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    model = Qwen2ForCausalLM(config).to(dtype)
    model.config._attn_implementation = "eager"
    return model


@pytest.fixture(scope="module")
def tiny_lm():
    return tiny_qwen2(torch.float32)


def rollout_batch(model, num_seqs: int = 6, seed: int = 1):
    """Right-padded prompt + response sequences, an old policy close to the current one, advantages."""
    g = torch.Generator().manual_seed(seed)
    length = 12
    seqs = torch.randint(1, 40, (num_seqs, length), generator=g)
    attention = torch.ones_like(seqs)
    action_mask = torch.zeros(num_seqs, length - 1)
    for i in range(num_seqs):
        end = length - (i % 3)  # some padding at the end
        attention[i, end:] = 0
        seqs[i, end:] = 0
        action_mask[i, 3 : end - 1] = 1  # response = positions 4..end-1 of the sequence
    with torch.no_grad():
        logp, _ = token_logprobs(model, seqs, attention)
    old = (logp[:, 1:] + 0.3 * torch.randn(logp[:, 1:].shape, generator=g)) * action_mask
    seq_adv = torch.tensor([1.2, -0.7, 0.4, -1.1, 0.9, -0.2][:num_seqs])
    return seqs, attention, action_mask, old, seq_adv.unsqueeze(1) * action_mask


def patched_step(model, method: str, experiences, *, overrides=None):
    """Run DynamoActorTrainer.training_step on a fake self (no DeepSpeed, no CUDA)."""
    from openrlhf.models.actor import Actor

    actor = Actor(model)
    actor.packing_samples = False
    spec = get_method(method, overrides)
    args = openrlhf_args(
        actor={"eps_clip_low_high": (spec.loss.eps_low, spec.loss.eps_high), "dual_clip": spec.loss.dual_clip}
    )
    trainer = object.__new__(DynamoActorTrainer)
    trainer.actor, trainer.args, trainer.ema_model, trainer.aux_loss = actor, args, None, False
    trainer.strategy = ns(args=args, ring_attn_group=None)
    trainer.strategy.backward = lambda loss, actor, optim: loss.backward()
    trainer.strategy.optimizer_step = lambda *a, **k: None
    trainer.strategy.get_grad_norm = lambda actor: 0.0
    trainer.actor_optim, trainer.actor_scheduler = None, ns(get_last_lr=lambda: [1e-6])
    trainer.configure(spec)
    model.zero_grad()
    out = []
    for exp, info in experiences:
        out.append(trainer.training_step(exp, 0.0, 0, info))
    return out, {name: p.grad.clone() for name, p in model.named_parameters()}


def core_step(model, method: str, seqs, attention, action_mask, old, adv):
    """What the local engine computes: logp/entropy from the model, modulation factors, the core loss."""
    spec = get_method(method)
    model.zero_grad()
    logp, entropy = token_logprobs(model, seqs, attention)
    logp, entropy = logp[:, 1:], entropy[:, 1:]  # local position t+1 = OpenRLHF action position t
    beta_comp, beta_stab = modulation_factors(
        logp.detach(),
        old,
        adv,
        entropy,
        action_mask,
        spec.modulation,
        eps_low=spec.loss.eps_low,
        eps_high=spec.loss.eps_high,
    )
    loss, metrics = policy_loss(
        logp,
        old,
        adv * beta_comp * beta_stab,
        action_mask,
        spec.loss,
    )
    loss.backward()
    return loss, metrics, {name: p.grad.clone() for name, p in model.named_parameters()}


def experience(seqs, attention, action_mask, old, adv, rows):
    # Stock experiences carry the return at masked positions too (cumulative sums reach the
    # prompt part): add junk there to show the patched step ignores it, as the core does.
    junk = adv + 5.0 * (1 - action_mask)
    return Experience(
        sequences=seqs[rows],
        attention_mask=attention[rows],
        action_mask=action_mask[rows],
        action_log_probs=old[rows],
        advantages=junk[rows],
        info={},
    )


@pytest.mark.parametrize("method", ["dynamo", "dynamo-nocomp", "dapo"])
def test_patched_training_step_equals_core_loss_and_gradients(tiny_lm, method):
    seqs, attention, mask, old, adv = rollout_batch(tiny_lm)
    loss, metrics, core_grads = core_step(tiny_lm, method, seqs, attention, mask, old, adv)
    rows = torch.arange(seqs.shape[0])
    info = {"dp_size": 1, "batch_num_tokens": mask.sum(), "global_batch_size": torch.tensor(6.0)}
    (status,), grads = patched_step(tiny_lm, method, [(experience(seqs, attention, mask, old, adv, rows), info)])
    assert float(status["metrics"]["policy_loss"]) == pytest.approx(metrics["pg_loss"], abs=1e-6)
    for name, g in core_grads.items():
        assert torch.allclose(grads[name], g, atol=1e-6, rtol=1e-5), name
    if method == "dynamo":  # the factors did something
        assert float(status["metrics"]["modulation/beta_comp"]) > 1.0
        assert float(status["metrics"]["modulation/beta_stab"]) < 1.0


def test_mini_batch_normalisation_over_two_micro_batches_equals_one_batch(tiny_lm, monkeypatch):
    """norm_set mini_batch + gradient accumulation over 2 micro-batches = the core on the whole batch."""
    from openrlhf.trainer.ray import ppo_actor

    from dynamo.engines.openrlhf.actor import WINDOW_KEY

    # configure() installs the windowed iterator on the module; put the stock one back afterwards.
    monkeypatch.setattr(ppo_actor, "iter_grad_accum_global_norm", ppo_actor.iter_grad_accum_global_norm)
    overrides = {"modulation": {"norm_set": "mini_batch"}}
    seqs, attention, mask, old, adv = rollout_batch(tiny_lm)
    # Core: the whole batch in one forward, so its own ranges are the mini-batch ranges.
    _, _, core_grads = core_step(tiny_lm, "dynamo", seqs, attention, mask, old, adv)

    # Patched: two micro-batches of 3 through the windowed stock iterator (gas = 2); each backward
    # carries its share of the step's token-mean, as DeepSpeed accumulation expects.
    exps = [
        experience(seqs, attention, mask, old, adv, torch.arange(0, 3)),
        experience(seqs, attention, mask, old, adv, torch.arange(3, 6)),
    ]
    pairs = list(windowed_global_norm(iter(exps), ns(), 2, lambda e: e.action_mask))
    assert pairs[0][1] is pairs[1][1] and len(pairs[0][1][WINDOW_KEY]) == 2
    info = pairs[0][1]  # DeepSpeed scales each micro-batch loss by 1/gas; a plain backward does not
    info["batch_num_tokens"] = info["batch_num_tokens"] * 2
    _, grads = patched_step(tiny_lm, "dynamo", pairs, overrides=overrides)
    assert ppo_actor.iter_grad_accum_global_norm is windowed_global_norm
    for name, g in core_grads.items():
        assert torch.allclose(grads[name], g, atol=1e-6, rtol=1e-5), name


# ---------------------------------------------------------------------------------------------
# version guard, installation, launcher


def test_guard_passes_on_the_pinned_version():
    assert guards.mismatches() == []


def test_guard_trips_on_a_changed_source(monkeypatch):
    from openrlhf.trainer.ppo_utils import samples_generator

    def _dispatch_prompts_to_vllm(self, prompts, labels, *, images=None, **generate_kwargs):
        return []  # a different body, as a new OpenRLHF release would have

    monkeypatch.setattr(samples_generator.SamplesGenerator, "_dispatch_prompts_to_vllm", _dispatch_prompts_to_vllm)
    with pytest.raises(guards.OpenRLHFVersionError, match="_dispatch_prompts_to_vllm"):
        guards.verify_all()


def test_guard_trips_on_another_version(monkeypatch):
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.11.3" if name == "openrlhf" else real(name))
    with pytest.raises(guards.OpenRLHFVersionError, match="0.11.3"):
        guards.verify_all()


def test_install_replaces_the_ray_actor_classes(monkeypatch):
    import openrlhf.trainer.ppo_trainer as pt
    import openrlhf.trainer.ray.ppo_actor as pa

    from dynamo.engines.openrlhf.install import install
    from dynamo.engines.openrlhf.trainer import DynamoPolicyActor

    monkeypatch.setattr(pt, "PPOTrainer", pt.PPOTrainer)
    monkeypatch.setattr(pa, "PolicyModelActor", pa.PolicyModelActor)
    stock_trainer, stock_actor = pt.PPOTrainer.__ray_actor_class__, pa.PolicyModelActor.__ray_actor_class__
    install()
    assert pt.PPOTrainer.__ray_actor_class__ is DynamoPPOTrainer and issubclass(DynamoPPOTrainer, stock_trainer)
    assert pa.PolicyModelActor.__ray_actor_class__ is DynamoPolicyActor
    assert issubclass(DynamoPolicyActor, stock_actor)
    # The stock methods Ray copied at decoration time are untouched; ours override in the subclass.
    assert pt.PPOTrainer.__ray_metadata__.modified_class.train_step is not stock_trainer.train_step
    assert guards.mismatches() == []  # the guard looks through to the stock classes


# ---------------------------------------------------------------------------------------------
# metrics contract: the controller's metrics.jsonl, figures from it, summary.json's cost


def openrlhf_metrics_run(tmp_path, tiny_lm, monkeypatch, method: str, steps: int = 3):
    """metrics.jsonl written by DynamoPPOTrainer's own path (train_step + save_logs_and_checkpoints) for
    `steps` steps: generator and allocation are the patched classes on fake vLLM engines, the actor's
    metrics come from a real DynamoActorTrainer.training_step; only the stock Ray fan-out (experience
    making, ppo_train across actors) is replaced by its result."""
    from dynamo.engines.openrlhf import trainer as trainer_mod

    dynamic = get_method(method).group_filter.kind == "dynamic_sampling"
    args = openrlhf_args(n=4, batch=4, algo={"dynamic_filtering_enable": dynamic})
    run_dir = tmp_path / "runs" / method / "seed1"
    run_dir.mkdir(parents=True)
    trainer = make_trainer(method, args)
    trainer.options = ns(run_dir=str(run_dir), max_steps=0)
    # The experience maker runs inside the stock train_step replaced below; its metric is set here
    # (test_unequal_groups_get_core_and_hand_computed_advantages checks the value it computes).
    trainer.experience_maker = ns(group_of_position=None, advantage_abs_mean=0.5)
    rounds = trainer.spec.group_filter.max_refill_rounds
    gen, _ = make_generator(args, 100, trainer.allocate, rounds=rounds, **trainer.rule_hooks())
    trainer.samples_generator = gen

    class Group:
        def async_run_method(self, method_name, **kw):
            return []

    trainer.actor_model_group, trainer.critic_model_group = Group(), None
    trainer.wandb_logger = trainer.tensorboard_logger = None
    trainer.best_eval_metric_key, trainer.best_eval_metric_value, trainer._latest_eval_metric_value = "", 0.0, None

    seqs, attention, mask, old, adv = rollout_batch(tiny_lm)
    info = {"dp_size": 1, "batch_num_tokens": mask.sum(), "global_batch_size": torch.tensor(6.0)}
    (actor_status,), _ = patched_step(
        tiny_lm, method, [(experience(seqs, attention, mask, old, adv, torch.arange(6)), info)]
    )
    # ppo_train's reduction of the actor's metrics: a float per name.
    actor_metrics = {k: float(torch.as_tensor(v).float().mean()) for k, v in actor_status["metrics"].items()}

    def stock_train_step(self, rollout_samples, global_step):
        status = {**actor_metrics, "timing/make_experience": 0.5, "timing/ppo_train": 2.0, "timing/broadcast": 0.1}
        # stock's own rollout means (over the trained samples, not the contract's first round)
        status.update({"rollout/reward_mean": 0.5, "rollout/response_length_mean": 3.0, "rollout/num_samples": 16})
        status["generated_samples"] = ["text", 1.0]
        return status, global_step + 1

    monkeypatch.setattr(trainer_mod._StockPPOTrainer, "train_step", stock_train_step)
    step = 0
    for _ in range(steps):
        samples, _, consumed, _ = gen.generate_samples(**GEN_KW)
        status, step = trainer.train_step(samples, step)
        status["timing/generation"] = 1.0  # what the stock fit loop adds before logging
        status["timing/step_total"] = sum(v for k, v in status.items() if k.startswith("timing/"))
        trainer.save_logs_and_checkpoints(step, status, {"episode": 0, "global_step": step})
    return run_dir


@pytest.mark.parametrize("method", ["dynamo", "dapo"])
def test_figures_from_openrlhf_metrics_have_no_empty_panel(tmp_path, tiny_lm, fake_ray, monkeypatch, method):
    import argparse

    import matplotlib.figure

    from dynamo.reporting import figures

    openrlhf_metrics_run(tmp_path, tiny_lm, monkeypatch, method)
    drawn = []
    save = matplotlib.figure.Figure.savefig

    def savefig(fig, *a, **k):
        drawn.append(fig)
        return save(fig, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    out = tmp_path / "fig"
    figures.run(argparse.Namespace(runs_root=str(tmp_path / "runs"), methods=method, seeds="1", out=str(out)))
    assert (out / "training_curves.png").exists() and (out / "allocation.png").exists()
    panels = [ax for fig in drawn for ax in fig.axes if ax.axison]
    assert len(panels) >= 9
    empty = [ax.get_title() for ax in panels if not ax.get_lines()]
    assert not empty, f"empty panels from OpenRLHF-shaped metrics: {empty}"


def test_openrlhf_metrics_use_the_contract_names_and_cost_sums_them(tmp_path, tiny_lm, fake_ray, monkeypatch):
    from dynamo import metrics_names as M
    from dynamo.config import load_config
    from dynamo.engines.openrlhf.config import OpenRLHFConfig
    from dynamo.engines.openrlhf.launcher import run_gpus, write_summary
    from dynamo.io import read_jsonl

    run_dir = openrlhf_metrics_run(tmp_path, tiny_lm, monkeypatch, "dapo", steps=2)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert M.undeclared(row, "openrlhf") == []  # stock keys renamed or dropped, nothing passed through
        # the first-round mean (generator), not stock's 3.0 over the trained samples: one number per name
        assert row[M.RESPONSE_LENGTH] != 3.0 and M.REWARD_MEAN in row
        for name in (
            M.ACCURACY,
            M.ENTROPY,
            M.INFORMATIVE_SHARE,
            M.INFORMATIVE_SAMPLE_SHARE,
            M.BETA_COMP,
            M.GRAD_NORM,
            M.N_MIN,
            M.PG_LOSS,
        ):
            assert name in row, name
        assert row[M.RESPONSES] >= 16 and row[M.PROMPTS] >= 4  # DAPO refills count as generated
    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "config" / "config.yaml", root / "config" / "experiments" / "qwen2.5-math-7b.yaml")
    cmd = ["python", "--actor.model_name_or_path", "m"]
    summary = write_summary(cfg, cfg.method("dapo"), 1, cmd, run_dir, 100, seconds_total=10.0)
    cost = json.loads((run_dir / "summary.json").read_text())[M.SUMMARY_COST]
    assert cost == summary[M.SUMMARY_COST] and set(cost) == set(M.COST_FIELDS)
    assert cost["prompts_seen"] == sum(r[M.PROMPTS] for r in rows)
    assert cost["responses_generated"] == sum(r[M.RESPONSES] for r in rows)
    assert cost["tokens_generated"] == sum(r[M.TOKENS_GENERATED] for r in rows) > cost["tokens_trained"] > 0
    assert cost["seconds"] == {
        "rollout": 2.0,
        "grading": None,
        "experience": 1.0,
        "train": 4.0,
        "sync": 0.2,
        "total": 10.0,
    }
    assert cost["gpu_seconds"] == 10.0 * run_gpus(OpenRLHFConfig.from_dict(cfg.openrlhf))


def test_objective_generator_state_rides_in_the_actor_checkpoint(monkeypatch):
    """Clip-Cov's generator: saved in the DeepSpeed client_states by rank, restored on resume."""
    from dynamo.engines.common import objective_generator
    from dynamo.engines.openrlhf import trainer as trainer_mod

    saved = {}
    monkeypatch.setattr(
        trainer_mod._StockPolicyActor, "save_checkpoint", lambda self, tag, states, **kw: saved.update(states)
    )
    actor = object.__new__(trainer_mod.DynamoPolicyActor)
    actor.trainer = ns(generator=objective_generator(7, 0))
    torch.rand(5, generator=actor.trainer.generator)  # advanced by some picks
    actor.save_checkpoint("global_step3", {"global_step": 3})
    assert saved["global_step"] == 3
    restored = objective_generator(7, 0)
    restored.set_state(trainer_mod.restore_generator_state(saved[trainer_mod.GENERATOR_KEY], rank=0))
    assert torch.equal(torch.rand(4, generator=restored), torch.rand(4, generator=actor.trainer.generator))
    with pytest.raises(RuntimeError, match="same number of actor GPUs"):
        trainer_mod.restore_generator_state(saved[trainer_mod.GENERATOR_KEY], rank=1)
