"""openrlhf.shuffle_mini_batches: the rollouts' order before OpenRLHF's dynamic micro-batching.

Stock OpenRLHF 0.11.2 (dynamic batching) cuts each GPU's rollouts into consecutive optimizer-step
slices and each slice into token-balanced micro-batches; the patched `ppo_train` permutes the
rollouts first when the switch is on. The micro-batches below are made with OpenRLHF's own
partitioning function, the way `NaiveReplayBuffer.setup_dynamic_batch` slices the buffer.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import openrlhf_stubs
import pytest
import torch

openrlhf_stubs.install()
openrlhf = pytest.importorskip("openrlhf")

from openrlhf.trainer.ray.ppo_actor import ActorPPOTrainer  # noqa: E402
from openrlhf.utils.seqlen_balancing import (  # noqa: E402
    get_minimum_num_micro_batch_size,
    get_seqlen_balanced_partitions,
)

from dynamo.engines.openrlhf.actor import DynamoActorTrainer  # noqa: E402
from dynamo.engines.openrlhf.config import OpenRLHFConfig  # noqa: E402
from dynamo.engines.openrlhf.entry import parse_own  # noqa: E402

GROUPS, PER_GROUP, STEP = 16, 8, 32  # 128 rollouts of 16 prompts; 32 rollouts per optimizer step


def rollouts(seed: int = 0) -> list:
    """Buffer order as OpenRLHF keeps it: each prompt's group contiguous."""
    rng = random.Random(seed)
    items = []
    for g in range(GROUPS):
        for _ in range(PER_GROUP):
            n = rng.randint(200, 3000)
            items.append(SimpleNamespace(group=g, sequences=torch.zeros(1, n + 100), action_mask=torch.ones(1, n)))
    return items


def trainer(shuffle: bool, seed: int = 1) -> DynamoActorTrainer:
    t = object.__new__(DynamoActorTrainer)
    t.shuffle_mini_batches, t.shuffle_seed = shuffle, seed
    t.replay_buffer = SimpleNamespace(items=rollouts())
    return t


def order_seen_by_stock_ppo_train(t, monkeypatch) -> list:
    seen = []
    monkeypatch.setattr(ActorPPOTrainer, "ppo_train", lambda self, kl: seen.extend(self.replay_buffer.items))
    t.ppo_train(0.0)
    return seen


def micro_batch_groups(items: list) -> list[set[int]]:
    """Prompt groups in each micro-batch, as setup_dynamic_batch cuts the buffer (token budget 4096)."""
    windows = []
    for start in range(0, len(items), STEP):
        lengths = [int(i.sequences.numel()) for i in items[start : start + STEP]]
        k = get_minimum_num_micro_batch_size(lengths, 4096, 1, 1)
        for part in get_seqlen_balanced_partitions(lengths, k, equal_size=False):
            windows.append({items[start + j].group for j in part})
    return windows


def test_off_leaves_the_stock_order(monkeypatch):
    t = trainer(shuffle=False)
    before = list(t.replay_buffer.items)
    assert order_seen_by_stock_ppo_train(t, monkeypatch) == before
    steps = [{i.group for i in before[s : s + STEP]} for s in range(0, len(before), STEP)]
    assert all(len(g) == STEP // PER_GROUP for g in steps)  # each step sees 4 neighbouring prompts


def test_on_permutes_deterministically_and_mixes_prompts_across_steps(monkeypatch):
    before = rollouts()
    on = order_seen_by_stock_ppo_train(trainer(shuffle=True), monkeypatch)
    assert len(on) == len(before)
    assert [(i.group, i.sequences.numel()) for i in on] != [(i.group, i.sequences.numel()) for i in before]
    assert sorted((i.group, i.sequences.numel()) for i in on) == sorted(
        (i.group, i.sequences.numel()) for i in before
    )
    again = order_seen_by_stock_ppo_train(trainer(shuffle=True), monkeypatch)
    assert [i.sequences.numel() for i in again] == [i.sequences.numel() for i in on]  # same rollouts, same order
    other = order_seen_by_stock_ppo_train(trainer(shuffle=True, seed=2), monkeypatch)
    assert [i.sequences.numel() for i in other] != [i.sequences.numel() for i in on]
    steps = [{i.group for i in on[s : s + STEP]} for s in range(0, len(on), STEP)]
    assert min(len(g) for g in steps) > STEP // PER_GROUP  # prompts from across the RL step
    # The statistics windows (micro-batches) draw from more prompt groups than stock's neighbours.
    mean = lambda ws: sum(map(len, ws)) / len(ws)  # noqa: E731
    assert mean(micro_batch_groups(on)) > mean(micro_batch_groups(before))


def test_the_switch_reaches_the_actor_and_is_refused_without_dynamic_batching():
    spec = ["--dynamo.spec", "/run/openrlhf/method_spec.json", "--dynamo.spec_sha256", "ab12"]
    options, _ = parse_own([*spec, "--dynamo.shuffle_mini_batches", "1"])
    assert options.shuffle_mini_batches is True
    assert parse_own(spec)[0].shuffle_mini_batches is False
    with pytest.raises(ValueError, match="shuffle_mini_batches applies to dynamic_batch: true only"):
        OpenRLHFConfig.from_dict({"shuffle_mini_batches": True})
    assert OpenRLHFConfig.from_dict({"dynamic_batch": True, "shuffle_mini_batches": True}).shuffle_mini_batches


def test_the_launcher_passes_the_switch():
    import dataclasses

    from dynamo.config import load_config
    from dynamo.engines.openrlhf.launcher import build_command

    cfg = load_config("config/config.yaml", "config/experiments/qwen2.5-math-7b.yaml")
    assert "--dynamo.shuffle_mini_batches" not in build_command(cfg, "dynamo", 1, "/tmp/run")
    on = dataclasses.replace(cfg, openrlhf={**cfg.openrlhf, "shuffle_mini_batches": True})
    cmd = build_command(on, "dynamo", 1, "/tmp/run")
    assert cmd[cmd.index("--dynamo.shuffle_mini_batches") + 1] == "1"
