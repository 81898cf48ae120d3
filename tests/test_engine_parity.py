"""Engine parity: every registered method gives the same advantages, loss and gradients in both engines.

One batch of unequal groups (3, 5 and 2 responses; one group all correct; two responses hitting
the length limit) goes through
- the local engine: `build_batch` (overlong shaping), `LocalTrainer.advantages`, then
  `LocalTrainer.accumulate_gradients` over three micro-batches (4, 4, 2 sequences);
- the OpenRLHF engine: single-sample experiences through `DynamoExperienceMaker` (overlong shaping,
  group advantages by id), then the same three micro-batches through the stock optimizer-step
  iterator (`iter_grad_accum_global_norm`, windowed when the method needs it) and
  `DynamoActorTrainer.training_step`, with DeepSpeed's 1/gas loss scaling emulated in `backward`.
The model's weights are float64; both engines compute log-probs from float32 logits (OpenRLHF's
stock `Actor.forward` casts them, and the local engine does the same), so float64 here means the
weights, the advantages and the objective's statistics. Tolerance: max abs difference 1e-6.
The methods come from `all_methods()`, so a newly registered method is covered without an edit;
methods with window statistics run with both windows (micro_batch and mini_batch).
"""

from __future__ import annotations

import dataclasses

import openrlhf_stubs
import pytest
import torch

openrlhf_stubs.install()
try:
    from openrlhf.models.actor import Actor
    from openrlhf.trainer.ppo_utils.experience import Experience
    from openrlhf.trainer.ppo_utils.experience_maker import RemoteExperienceMaker
    from openrlhf.trainer.ppo_utils.kl_controller import FixedKLController
    from openrlhf.trainer.ray import ppo_actor
except ImportError as err:  # pragma: no cover - CI installs it
    pytest.skip(f"openrlhf 0.11.2 is not importable ({err})", allow_module_level=True)

from test_openrlhf import ns, openrlhf_args, tiny_qwen2  # noqa: E402

from dynamo import metrics_names as M  # noqa: E402
from dynamo.core.rules import make_rule  # noqa: E402
from dynamo.core.window import needs_window  # noqa: E402
from dynamo.engines.common import objective_generator  # noqa: E402
from dynamo.engines.local.policy import token_logprobs  # noqa: E402
from dynamo.engines.local.rollouts import build_batch  # noqa: E402
from dynamo.engines.local.trainer import LocalTrainer  # noqa: E402
from dynamo.engines.openrlhf.actor import DynamoActorTrainer  # noqa: E402
from dynamo.engines.openrlhf.experience import DynamoExperienceMaker, pool_of_samples  # noqa: E402
from dynamo.generation import Generation  # noqa: E402
from dynamo.methods import all_methods  # noqa: E402

MAX_NEW = 6  # response length limit: two responses reach it (DAPO's overlong buffer = 1 token)
MICRO = 4  # sequences per micro-batch in both engines: micro-batches of 4, 4, 2
SEED = 3
GROUPS = [  # per group: (correct, response length) of each response
    [(1, 3), (0, 6), (0, 2)],
    [(1, 4), (1, 2), (0, 5), (1, 6), (0, 3)],
    [(1, 2), (1, 4)],  # all correct: zero group spread
]


# The registered Clip-Cov band (1 < cov < 5) and ratios pick no token, or one, of a batch this small:
# a dense variant makes the random pick and the top-k choose among many tokens.
DENSE_COVARIANCE = {"ratio": 0.2, "clip_lb": 0.0}


def cases():
    for name, spec in all_methods().items():
        windows = [spec.window]
        if needs_window(spec):
            windows.append("mini_batch" if spec.window == "micro_batch" else "micro_batch")
        for window in windows:
            yield pytest.param(name, window, False, id=f"{name}-{window}")
            if spec.covariance.kind != "none":
                yield pytest.param(name, window, True, id=f"{name}-{window}-dense")


@pytest.fixture(scope="module")
def model():
    return tiny_qwen2(torch.float64)


def generations() -> tuple[list[Generation], list[float]]:
    g = torch.Generator().manual_seed(SEED)
    gens, correct = [], []
    for group, responses in enumerate(GROUPS):
        prompt = torch.randint(1, 40, (3,), generator=g).tolist()
        for right, length in responses:
            response = torch.randint(1, 40, (length,), generator=g).tolist()
            gens.append(Generation(group, prompt, response, "", truncated=length == MAX_NEW))
            correct.append(bool(right))
    return gens, correct


def grads(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def local_engine(model, spec, batch, old_logp):
    trainer = object.__new__(LocalTrainer)
    trainer.method, trainer.t = spec, ns(micro_batch_sequences=MICRO, temperature=1.0)
    trainer.model, trainer.optimizer = model, torch.optim.SGD(model.parameters(), lr=0.0)
    trainer.generator = objective_generator(SEED)
    trainer.rule = make_rule(spec.allocation)  # the rule gives the advantages (its own baseline, if any)
    advantages = trainer.advantages(batch)
    metrics = trainer.accumulate_gradients(batch, torch.arange(batch.num_samples), old_logp, advantages)
    return advantages, metrics[M.ACTOR_LOSS], grads(model), metrics


def openrlhf_advantages(spec, gens, correct, args) -> torch.Tensor:
    """Per-sample advantages from the patched experience maker, in the order of `gens`."""
    samples = []
    for gen, right in zip(gens, correct):
        seq = torch.tensor([gen.prompt_ids + gen.response_ids])
        action_mask = torch.zeros(1, seq.shape[1] - 1, dtype=torch.long)
        action_mask[0, len(gen.prompt_ids) - 1 :] = 1
        score = torch.tensor([float(right)])
        s = Experience(
            sequences=seq,
            attention_mask=torch.ones_like(seq),
            action_mask=action_mask,
            rewards=score.clone(),  # the reward function's reward: correctness; shaping comes after
            scores=score,
            response_length=torch.tensor([len(gen.response_ids)]),
            info={},
        )
        samples.append(s)
    maker = object.__new__(DynamoExperienceMaker)
    maker.strategy, maker.args, maker.kl_ctl = ns(args=args), args, FixedKLController(0.0)
    maker.advantage_estimator, maker.tokenizer = "group_norm", ns(pad_token_id=0)
    maker.configure(spec, make_rule(spec.allocation))
    for s, gen in zip(samples, gens):
        s.dynamo_group = gen.prompt_index
    maker.group_of_position = torch.tensor([gen.prompt_index for gen in gens])
    maker.pool_of_position = pool_of_samples(samples)  # what the trainer sets: each group's own counts
    batches = RemoteExperienceMaker.split_rollout_samples(maker, samples)
    for b in batches:
        b.kl = torch.zeros_like(b.action_mask, dtype=torch.float32)
    out = torch.zeros(len(gens), dtype=torch.float64)
    for b in maker.compute_advantages_and_returns(batches):
        for row, pos in enumerate(b.index):
            values = b.advantages[row][b.action_mask[row].bool()]
            assert torch.equal(values, values[0].expand_as(values))  # one value over the response
            out[pos] = values[0]
    return out


def openrlhf_engine(model, spec, batch, old_logp, advantages, args, monkeypatch):
    monkeypatch.setattr(ppo_actor, "iter_grad_accum_global_norm", ppo_actor.iter_grad_accum_global_norm)
    trainer = object.__new__(DynamoActorTrainer)
    actor = Actor(model)
    actor.packing_samples = False
    trainer.actor, trainer.args, trainer.ema_model, trainer.aux_loss = actor, args, None, False
    gas = -(-batch.num_samples // MICRO)
    losses = []

    def backward(loss, actor, optim):  # DeepSpeed scales every micro-batch loss by 1/gas
        losses.append(float(loss.detach()) / gas)
        (loss / gas).backward()

    trainer.strategy = ns(args=args, ring_attn_group=None)
    trainer.strategy.backward = backward
    trainer.strategy.optimizer_step = lambda *a, **k: None
    trainer.strategy.get_grad_norm = lambda actor: 0.0
    trainer.actor_optim, trainer.actor_scheduler = None, ns(get_last_lr=lambda: [1e-6])
    trainer.configure(spec, seed=SEED, rank=0)

    action_mask = batch.response_mask[:, 1:]  # OpenRLHF's action t predicts token t + 1
    per_token = advantages.unsqueeze(1) * action_mask + 5.0 * (1 - action_mask)  # stock fills prompt positions too
    experiences = [
        Experience(
            sequences=batch.input_ids[sl],
            attention_mask=batch.attention_mask[sl],
            action_mask=action_mask[sl],
            action_log_probs=old_logp[sl, 1:],
            advantages=per_token[sl],
            info={},
        )
        for sl in (slice(i, i + MICRO) for i in range(0, batch.num_samples, MICRO))
    ]
    model.zero_grad()
    # What ppo_train does: the (possibly windowed) stock iterator, then one training_step per item.
    pairs = ppo_actor.iter_grad_accum_global_norm(iter(experiences), ns(), gas, lambda e: e.action_mask)
    for step, (exp, info) in enumerate(pairs):
        trainer.training_step(exp, 0.0, step, info)
    return sum(losses), grads(model)


@pytest.mark.parametrize("method, window, dense", list(cases()))
def test_local_and_openrlhf_steps_agree(model, monkeypatch, method, window, dense):
    spec = dataclasses.replace(all_methods()[method], window=window)
    if dense:
        spec = dataclasses.replace(spec, covariance=dataclasses.replace(spec.covariance, **DENSE_COVARIANCE))
    gens, correct = generations()
    shaping = spec.reward_shaping
    batch = build_batch(
        gens,
        ["p0", "p1", "p2"],
        correct,
        pad_token_id=0,
        max_new_tokens=MAX_NEW,
        overlong_buffer_fraction=shaping.overlong_buffer_fraction,
        overlong_penalty_value=shaping.overlong_penalty,
    )
    # OpenRLHF's own loss and shaping flags keep their test defaults (clip 0.2/0.2, dual clip 10,
    # token-mean, no overlong buffer) whatever the method: the patched side reads the spec alone.
    args = openrlhf_args(rollout={"max_new_tokens": MAX_NEW})
    # An old policy near the current one, so ratios differ from 1 and clipping and covariances matter.
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        logp, _ = token_logprobs(model, batch.input_ids, batch.attention_mask)
    old_logp = (logp + 0.3 * torch.randn(logp.shape, generator=g, dtype=logp.dtype)) * batch.response_mask

    model.zero_grad()
    adv_local, loss_local, grads_local, metrics = local_engine(model, spec, batch, old_logp)
    if dense:  # the covariance mechanism acted on several tokens
        share = metrics[M.CLIP_COV_SHARE if spec.covariance.kind == "clip_cov" else M.KL_COV_SHARE]
        assert share * int(batch.response_mask.sum()) >= 3
    adv_openrlhf = openrlhf_advantages(spec, gens, correct, args)
    assert (adv_openrlhf - adv_local.double()).abs().max() <= 1e-6
    assert adv_local.abs().max() > 0.1  # the batch has signal

    loss_openrlhf, grads_openrlhf = openrlhf_engine(model, spec, batch, old_logp, adv_openrlhf, args, monkeypatch)
    assert abs(loss_openrlhf - loss_local) <= 1e-6, (loss_openrlhf, loss_local)
    worst = max(float((grads_openrlhf[k] - grads_local[k]).abs().max()) for k in grads_local)
    assert worst <= 1e-6, f"max abs gradient difference {worst:.3g}"
    assert max(float(v.abs().max()) for v in grads_local.values()) > 1e-3  # gradients are not trivially 0
