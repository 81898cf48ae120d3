"""Allocation rules in the OpenRLHF engine (real OpenRLHF 0.11.2 code, Ray faked as in test_openrlhf):
the patched PPOTrainer allocates exactly as the local engine's rule fed the same graded samples, its
rule state rides in the checkpoint's client_states, skipped prompts are replaced before allocation,
and rules the engine cannot run are refused."""

from __future__ import annotations

import openrlhf_stubs
import pytest

openrlhf_stubs.install()
try:
    import openrlhf  # noqa: F401
except ImportError as err:  # pragma: no cover - CI installs it
    pytest.skip(f"openrlhf 0.11.2 is not importable ({err})", allow_module_level=True)

from test_openrlhf import GEN_KW, fake_ray, make_generator, make_trainer, openrlhf_args  # noqa: E402, F401

from dynamo import metrics_names as M  # noqa: E402
from dynamo.core.rules import make_rule, planned_counts  # noqa: E402
from dynamo.engines.openrlhf.launcher import check_supported  # noqa: E402
from dynamo.engines.openrlhf.rollout import prompt_id  # noqa: E402
from dynamo.engines.openrlhf.trainer import RULE_KEY  # noqa: E402
from dynamo.methods import get_method  # noqa: E402

OVERRIDES = {"knapsack-rl": {"allocation": {"params": {"min_buffer": 4}}}}


@pytest.mark.parametrize("name", ["vip", "knapsack-rl"])
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
    uneven = False
    for step in range(3):
        if step:  # serve the same prompts again: their history now drives the allocation
            gen._dataloader_iter = iter(gen.prompts_dataloader[:num_prompts])
        gen.generate_samples(**GEN_KW)
        ids, counts = asked[-1]
        assert counts == planned_counts(local, ids, None, None, n).tolist()
        assert sum(counts) == num_prompts * n
        uneven |= len(set(counts)) > 1
        graded = list(gen.graded)
        trainer.update_stats()
        local.observe([pid for pid, _ in graded], [float(score > 0.5) for _, score in graded])
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


def test_openrlhf_refuses_down_selecting_rules():
    for name in ("vip", "knapsack-rl", "greso"):
        check_supported(get_method(name))
    with pytest.raises(ValueError, match="local engine only"):
        check_supported(get_method("pods"))


def test_skipped_prompts_are_replaced_before_allocation(fake_ray):  # noqa: F811
    """GRESO in the OpenRLHF generator: q1 and q2 have long all-correct runs (skip probability
    1 - 0.5^1000 = 1 with min_keep 0), so the step rolls out q0, q3, q4, q5; all four get n."""
    n, num_prompts = 4, 4
    args = openrlhf_args(n=n, batch=num_prompts)
    trainer = make_trainer("grpo", args)
    trainer.spec = get_method("greso", {"allocation": {"params": {"min_keep": 0.0}}})
    gen, log = make_generator(args, 100, trainer.allocate)
    gen.skip = trainer.skip_prompts
    trainer.samples_generator = gen
    for i in (1, 2):
        trainer.rule.easy_run[prompt_id(f"q{i}", str(i))] = 1000
    samples, _, consumed, _ = gen.generate_samples(**GEN_KW)
    assert sorted(p for p, _ in log) == ["q0", "q3", "q4", "q5"] and {c for _, c in log} == {n}
    assert len(samples) == num_prompts * n and consumed == num_prompts + 2
    assert gen.step_log[M.SKIPPED_PROMPTS] == 2 and gen.step_log[M.PROMPTS] == num_prompts  # generated for
