"""The memory plan: exactly countable parts against tiny real models; the picks for the GPU configs."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from dynamo.config import load_config
from dynamo.plan import (
    AUTHORS_TOKENS,
    KNOWN_SHAPES,
    ModelShape,
    gradient_bytes,
    layout_of,
    logits_bytes,
    memory_plan,
    model_shape,
    optimizer_bytes,
    pick,
    weight_bytes,
)


def tiny(tied: bool) -> tuple[ModelShape, Qwen2ForCausalLM]:
    cfg = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    cfg.update(intermediate_size=48, tie_word_embeddings=tied)
    torch.manual_seed(0)
    return ModelShape.from_hf_config(cfg), Qwen2ForCausalLM(Qwen2Config(**cfg))


@pytest.mark.parametrize("tied", [False, True])
def test_parameter_count_is_exact(tied):
    shape, model = tiny(tied)
    assert shape.num_params() == sum(p.numel() for p in model.parameters())


def test_weight_gradient_and_optimizer_bytes_are_exact():
    shape, model = tiny(False)
    p = shape.num_params()
    bf16 = tiny(False)[1].to(torch.bfloat16)
    assert weight_bytes(p, 2, 1) == sum(t.numel() * t.element_size() for t in bf16.parameters())

    # fp32 training: gradients are 4 bytes/param; AdamW keeps exp_avg + exp_avg_sq, and the fp32 weights
    # themselves are the "master copy" a bf16 run keeps in the optimizer: 12 bytes/param together.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(input_ids=torch.tensor([[1, 2, 3, 4]]), labels=torch.tensor([[1, 2, 3, 4]])).loss.backward()
    opt.step()
    grads = sum(t.grad.numel() * t.grad.element_size() for t in model.parameters())
    moments = sum(v.numel() * v.element_size() for s in opt.state.values() for k, v in s.items() if k != "step")
    master = sum(t.numel() * t.element_size() for t in model.parameters())
    assert gradient_bytes(p, 0, 1) == grads
    assert optimizer_bytes(p, 0, 1) == moments + master
    # ZeRO shards over the data-parallel group: optimizer from stage 1, gradients from 2, weights at 3.
    assert optimizer_bytes(p, 1, 8) == (moments + master) / 8 and gradient_bytes(p, 1, 8) == grads
    assert gradient_bytes(p, 2, 8) == grads / 8 and weight_bytes(p, 2, 8) == weight_bytes(p, 2, 1)
    assert weight_bytes(p, 3, 8) == weight_bytes(p, 3, 1) / 8


def test_known_shapes_match_the_published_sizes():
    assert abs(KNOWN_SHAPES["Qwen/Qwen2.5-Math-7B"].num_params() / 1e9 - 7.62) < 0.01
    assert abs(KNOWN_SHAPES["Qwen/Qwen2.5-Math-1.5B"].num_params() / 1e9 - 1.54) < 0.01


def test_the_old_7b_layout_overflows_and_the_authors_budget_fits():
    cfg = load_config("config/config.yaml", "config/experiments/qwen2.5-math-7b.yaml")
    old = dict(cfg.openrlhf, dynamic_batch=False, micro_train_batch_size=4, micro_rollout_batch_size=16)
    shape = model_shape(cfg.model.path)
    lay = layout_of(_with(cfg, old), 80)
    assert lay.rollout_tokens == 16 * 4096
    # The arithmetic: ~40 GB of fp32 logits alone for 16 x 4096 tokens x 152k vocabulary.
    assert abs(lay.rollout_tokens * shape.vocab * 4 / 1e9 - 39.9) < 0.1
    assert logits_bytes(shape, lay.rollout_tokens, grad=False) / 2**30 > 80
    assert memory_plan(_with(cfg, old)).peak_gib > 80
    assert memory_plan(cfg).peak_gib < 80


@pytest.mark.parametrize("name", ["qwen2.5-math-7b", "qwen2.5-math-1.5b"])
def test_gpu_configs_use_what_the_plan_picks(name):
    cfg = load_config("config/config.yaml", f"config/experiments/{name}.yaml")
    budget, est = pick(model_shape(cfg.model.path), layout_of(cfg, 80))
    assert budget == AUTHORS_TOKENS
    assert cfg.openrlhf["dynamic_batch"] is True
    assert cfg.openrlhf["max_tokens_per_gpu"] == cfg.openrlhf["rollout_max_tokens_per_gpu"] == budget
    from dynamo.engines.openrlhf.launcher import build_command

    cmd = build_command(cfg, "dynamo", 1, "/tmp/run")
    assert "--train.dynamic_batch_enable" in cmd
    assert cmd[cmd.index("--train.max_tokens_per_gpu") + 1] == cmd[cmd.index("--rollout.max_tokens_per_gpu") + 1]
    assert cmd[cmd.index("--train.max_tokens_per_gpu") + 1] == str(budget)


def test_pick_shrinks_the_budget_on_a_small_card():
    cfg = load_config("config/config.yaml", "config/experiments/qwen2.5-math-1.5b.yaml")
    shape, lay = model_shape(cfg.model.path), layout_of(cfg, 40)
    budget, est = pick(shape, lay, cap=32768)
    assert 4096 <= budget < 32768 and est.peak_gib <= 0.9 * 40
    assert pick(shape, layout_of(cfg, 10)) is None  # vLLM's 60% + states do not fit 10 GiB


def test_plan_command(capsys):
    from dynamo.cli import main

    rc = main(["plan", "--config", "config/config.yaml", "config/experiments/qwen2.5-math-7b.yaml"])
    out = capsys.readouterr().out
    assert rc == 0 and "picked: 4096 tokens per GPU" in out and "log-prob pass" in out
    assert "per checkpoint: 106.6 GB" in out and "per sweep:" in out


def _with(cfg, openrlhf: dict):
    import dataclasses

    return dataclasses.replace(cfg, openrlhf=openrlhf)


def test_seven_b_generation_counts_the_resident_actor_weights():
    """Asleep under ZeRO-2, the actor keeps its bf16 weights on the GPU beside vLLM's share."""
    cfg = load_config("config/config.yaml", "config/experiments/qwen2.5-math-7b.yaml")
    est = memory_plan(cfg)
    p = est.params
    gen = est.phases["generation"]
    assert gen["actor weights (asleep)"] == weight_bytes(p, 2, 8) / 2**30
    assert est.totals["generation"] >= 60 and est.peak_phase == "generation"
    zero3 = memory_plan(_with(cfg, dict(cfg.openrlhf, zero_stage=3)))
    assert zero3.phases["generation"]["actor weights (asleep)"] < 1  # ZeRO-3 puts the shards to sleep too


def test_checkpoint_footprint_is_weights_plus_optimizer_states():
    from dynamo.plan import disk_plan

    cfg = load_config("config/config.yaml", "config/experiments/qwen2.5-math-7b.yaml")
    d = disk_plan(cfg)
    p = model_shape(cfg.model.path).num_params()
    # one checkpoint = the bf16 module weights + all optimizer shards (fp32 master, exp_avg, exp_avg_sq)
    assert d.per_checkpoint_gb * 1e9 == weight_bytes(p, 2, 1) + optimizer_bytes(p, 0, 1)
    assert 106 < d.per_checkpoint_gb < 108
    runs = len({*cfg.methods, *cfg.ablation_methods}) * len(cfg.seeds)
    assert d.kept == 2 and d.runs == runs and d.per_sweep_gb == runs * (2 * d.per_checkpoint_gb + d.final_gb)
    one = disk_plan(_with(cfg, dict(cfg.openrlhf, max_ckpt_num=1)))
    assert one.per_run_gb == d.per_run_gb - d.per_checkpoint_gb
