"""The openrlhf engine's first-day safety nets, on CPU against the real OpenRLHF 0.11.2 code.

Seeded prompt order, the dropped epoch tail, a private Ray instance, metrics rows on resume, a
missing reward, and a checkpoint directory damaged by a crash. Same stubs and fakes as
tests/test_openrlhf.py (flash_attn/vllm stubbed, Ray calls faked, results out of order).
"""

from __future__ import annotations

import json
import logging

import openrlhf_stubs
import pytest
import torch

openrlhf_stubs.install()
try:
    import openrlhf  # noqa: F401
    from openrlhf.utils.deepspeed.deepspeed import DeepspeedStrategy
except ImportError as err:  # pragma: no cover - CI installs it
    pytest.skip(f"openrlhf 0.11.2 is not importable ({err})", allow_module_level=True)

from test_openrlhf import GEN_KW, FakeRef, fake_ray, make_generator, make_trainer, ns, openrlhf_args  # noqa: E402,F401

from dynamo.checkpoint import repair_metrics as truncate_metrics  # noqa: E402  (what the resume calls)
from dynamo.engines.openrlhf import entry  # noqa: E402
from dynamo.engines.openrlhf.resume import MARKER, DamagedCheckpointError, mark_complete, prepare_resume  # noqa: E402
from dynamo.engines.openrlhf.trainer import seed_prompt_order  # noqa: E402

pytestmark = pytest.mark.usefixtures("fake_ray")  # Ray calls faked (results out of order) in every test

# ---------------------------------------------------------------------------------------------
# seeding: the controller's prompt loader


class Prompts(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.items = [f"q{i}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def stock_prompt_loader(n: int = 50):
    """The loader OpenRLHF's prepare_datasets builds in the controller (no torch.distributed there)."""
    strategy = object.__new__(DeepspeedStrategy)
    return DeepspeedStrategy.setup_dataloader(strategy, Prompts(n), 1, True, True, lambda b: b)


def first_prompts(seed: int | None, k: int = 8) -> list[str]:
    torch.rand(17)  # whatever the process drew from the global RNG before must not matter
    loader = stock_prompt_loader()
    if seed is not None:
        seed_prompt_order(loader, seed)
    it = iter(loader)
    return [next(it)[0] for _ in range(k)]


def test_same_seed_same_first_prompts_different_seed_different():
    assert first_prompts(1) == first_prompts(1)
    assert first_prompts(1) != first_prompts(2)


def test_stock_loader_ignores_the_seed():
    """Why seeding is needed: unseeded, the order follows the process's global RNG, not --seed."""
    torch.manual_seed(0)
    a = first_prompts(None)
    torch.manual_seed(1)
    b = first_prompts(None)
    assert a != b


# ---------------------------------------------------------------------------------------------
# the epoch's short tail step


def step_sizes(keep_tail: bool, num_prompts: int = 10, n: int = 4, batch: int = 4) -> list[int]:
    args = openrlhf_args(n=n, batch=batch)
    gen, _ = make_generator(args, num_prompts, lambda ids: [n] * len(ids))
    gen.keep_tail = keep_tail
    sizes = []
    while True:
        samples, _, _, exhausted = gen.generate_samples(**GEN_KW)
        if samples:
            sizes.append(len(samples))
        if exhausted:
            return sizes


def test_tail_step_is_dropped_by_default():
    assert step_sizes(keep_tail=True) == [16, 16, 8]  # stock behaviour: a half step counted as a step
    assert step_sizes(keep_tail=False) == [16, 16]


def test_dropped_tail_is_neither_generated_nor_graded():
    args = openrlhf_args(n=4, batch=4)
    gen, log = make_generator(args, 10, lambda ids: [4] * len(ids))
    while not gen.generate_samples(**GEN_KW)[3]:
        pass
    assert len(log) == 8 and len(gen.graded) == 32 and gen.steps_done == 2 and gen.tails_dropped == 1


def test_keep_tail_reaches_the_launch_command():
    from dynamo.config import load_config
    from dynamo.engines.openrlhf.launcher import build_command

    cfg = load_config("config/config.yaml", "config/experiments/qwen2.5-math-7b.yaml")
    assert "--dynamo.keep_tail" not in build_command(cfg, "dynamo", 1, "/tmp/run")
    cfg.openrlhf["keep_tail_step"] = True
    cmd = build_command(cfg, "dynamo", 1, "/tmp/run")
    assert cmd[cmd.index("--dynamo.keep_tail") + 1] == "1"
    options, _ = entry.parse_own(entry.split_argv(cmd[3:])[0])
    assert options.keep_tail is True


# ---------------------------------------------------------------------------------------------
# Ray: a private instance unless an address is given


def test_ray_starts_a_private_instance_unless_an_address_is_given(monkeypatch, tmp_path):
    import runpy

    import ray

    from dynamo.engines.openrlhf import install

    calls = []
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(install, "install", lambda: None)
    monkeypatch.setattr(runpy, "run_module", lambda *a, **k: None)
    from dynamo.engines.openrlhf.spec_file import write_spec
    from dynamo.methods import get_method

    digest = write_spec(tmp_path / "method_spec.json", get_method("grpo"))
    argv = ["--dynamo.spec", str(tmp_path / "method_spec.json"), "--dynamo.spec_sha256", digest]
    argv += ["--ckpt.path", str(tmp_path / "ckpt"), "--ckpt.load_enable"]
    entry.main(argv)
    entry.main([*argv, "--dynamo.ray_address", "10.0.0.1:6379"])
    assert [c["address"] for c in calls] == ["local", "10.0.0.1:6379"]  # never None: that joins any cluster


# ---------------------------------------------------------------------------------------------
# a reward function that failed


def test_missing_reward_becomes_zero_counted_and_warned(caplog):
    args = openrlhf_args(n=4, batch=3)
    gen, _ = make_generator(args, 3, lambda ids: [4] * len(ids))
    for engine in gen.vllm_engines:
        generate = engine.generate_responses.remote

        def failing(_generate=generate, **kw):
            out = _generate(**kw)
            for r in out.value:
                if kw["prompt"] == "q1":  # q1 would score 1 on its first response
                    r.update(reward=None, scores=None, extra_logs={})
                else:  # what reward_func.py returns
                    r.update(extra_logs={"correct": r["scores"]})
            return out

        engine.generate_responses.remote = failing
    with caplog.at_level(logging.WARNING):
        samples, *_ = gen.generate_samples(**GEN_KW)
    assert len(samples) == 12 and gen.missing_rewards == 4
    q1 = [s for s in samples if s.prompts[0] == "q1"]
    assert all(s.scores.item() == 0.0 and s.info["reward"].item() == 0.0 for s in q1)
    assert {tuple(sorted(s.info)) for s in samples} == {tuple(sorted(samples[0].info))}  # same info keys
    assert "without a reward" in caplog.text

    trainer = make_trainer("grpo", args)
    trainer.samples_generator = gen
    status = {}
    monkey = type(trainer).__mro__[1]
    original = monkey.train_step
    try:
        monkey.train_step = lambda self, samples, step: (status, step + 1)
        trainer.experience_maker = ns(group_of_position=None, advantage_abs_mean=0.0)
        out, _ = trainer.train_step(samples, 0)
    finally:
        monkey.train_step = original
    assert out["reward/missing"] == 4.0 and gen.missing_rewards == 0


# ---------------------------------------------------------------------------------------------
# resume: metrics rows and damaged checkpoints


def test_resume_keeps_metrics_rows_up_to_the_restored_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in range(1, 15)))
    assert truncate_metrics(path, 10) == 4
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == list(range(1, 11))
    assert truncate_metrics(path, 10) == 0


def test_resume_through_the_trainer_leaves_no_duplicate_rows(tmp_path):
    """Steps 1..4 logged, checkpoint at 2, crash, resume: the log ends with one row per step."""
    args = openrlhf_args(n=4, batch=4, ckpt={"load_enable": True, "path": str(tmp_path / "ckpt")})
    saved = {"episode": 0, "global_step": 2, "total_consumed_prompts": 8, "data_loader_state_dict": {}}

    class Group:
        def async_run_method(self, method_name, **kw):
            return [FakeRef(dict(saved))]

    (tmp_path / "ckpt" / "_actor").mkdir(parents=True)
    trainer = make_trainer("grpo", args)
    trainer.options = ns(run_dir=str(tmp_path), max_steps=0)
    for step in (1, 2, 3, 4):
        trainer._write_metrics({"step": step, "actor/loss": float(step)})
    trainer.actor_model_group = Group()
    trainer.samples_generator = ns(steps_done=0)
    assert trainer.init_checkpoint_states()["global_step"] == 2
    for step in (3, 4):
        trainer._write_metrics({"step": step, "actor/loss": float(step)})
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_actor_dir_without_a_loaded_checkpoint_starts_fresh(tmp_path):
    """Stock: DeepSpeed loads nothing, get_checkpoint_states() is {}, fit() raises KeyError('episode')."""

    class Group:
        def async_run_method(self, method_name, **kw):
            return [FakeRef({})]

    (tmp_path / "_actor").mkdir()
    trainer = make_trainer("dynamo", openrlhf_args(ckpt={"load_enable": True, "path": str(tmp_path)}))
    trainer.actor_model_group = Group()
    trainer.samples_generator = ns(steps_done=0)
    states = trainer.init_checkpoint_states()
    assert states["episode"] == 0 and states["global_step"] == 0 and states["data_loader_state_dict"] == {}


def make_tag(actor_dir, step: int, complete: bool) -> None:
    (actor_dir / f"global_step{step}").mkdir(parents=True)
    (actor_dir / f"global_step{step}" / "mp_rank_00_model_states.pt").write_bytes(b"x")
    if complete:
        mark_complete(actor_dir, f"global_step{step}", step)


def test_intact_checkpoint_is_left_alone(tmp_path):
    actor = tmp_path / "_actor"
    make_tag(actor, 10, complete=False)  # written by stock code: no marker, but `latest` is DeepSpeed's word
    (actor / "latest").write_text("global_step10")
    assert prepare_resume(tmp_path) == "global_step10"
    assert prepare_resume(tmp_path / "nothing-here") is None


def test_crash_without_latest_falls_back_to_the_previous_good_checkpoint(tmp_path, caplog):
    actor = tmp_path / "_actor"
    make_tag(actor, 10, complete=True)
    make_tag(actor, 20, complete=False)  # the save that crashed (and took `latest` with it)
    with caplog.at_level(logging.WARNING):
        assert prepare_resume(tmp_path) == "global_step10"
    assert (actor / "latest").read_text() == "global_step10"
    assert "no readable 'latest'" in caplog.text and "skipping incomplete global_step20" in caplog.text
    assert (actor / "global_step10" / MARKER).exists()


def test_empty_or_dangling_latest_is_repaired_too(tmp_path):
    actor = tmp_path / "_actor"
    make_tag(actor, 10, complete=True)
    (actor / "latest").write_text("")  # crash while DeepSpeed rewrote it
    assert prepare_resume(tmp_path) == "global_step10"
    (actor / "latest").write_text("global_step30")
    assert prepare_resume(tmp_path) == "global_step10"


def test_crash_during_the_first_save_is_refused_with_a_clear_message(tmp_path):
    actor = tmp_path / "_actor"
    make_tag(actor, 10, complete=False)
    with pytest.raises(DamagedCheckpointError, match=r"Delete .* to start this run over"):
        prepare_resume(tmp_path)
    assert not (actor / "latest").exists()


def test_entry_refuses_a_damaged_checkpoint_before_ray_starts(tmp_path, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "init", lambda **kw: pytest.fail("ray.init must not run"))
    make_tag(tmp_path / "ckpt" / "_actor", 10, complete=False)
    from dynamo.engines.openrlhf.spec_file import write_spec
    from dynamo.methods import get_method

    digest = write_spec(tmp_path / "method_spec.json", get_method("grpo"))
    argv = ["--dynamo.spec", str(tmp_path / "method_spec.json"), "--dynamo.spec_sha256", digest]
    argv += ["--ckpt.path", str(tmp_path / "ckpt"), "--ckpt.load_enable"]
    with pytest.raises(DamagedCheckpointError):
        entry.main(argv)


def test_controller_marks_each_saved_checkpoint_complete(tmp_path):
    args = openrlhf_args(n=4, batch=4, ckpt={"save_steps": 2, "path": str(tmp_path)})

    class Group:
        def async_run_method(self, method_name, **kw):
            (tmp_path / "_actor" / kw["tag"]).mkdir(parents=True)  # what DeepSpeed's save creates
            return []

    trainer = make_trainer("grpo", args)
    trainer.actor_model_group, trainer.critic_model_group = Group(), None
    trainer.wandb_logger = trainer.tensorboard_logger = None
    trainer.best_eval_metric_key, trainer.best_eval_metric_value, trainer._latest_eval_metric_value = "", 0.0, None
    trainer.samples_generator = ns(steps_done=2)
    trainer.save_logs_and_checkpoints(2, {}, {"episode": 0, "global_step": 2})
    assert (tmp_path / "_actor" / "global_step2" / MARKER).exists()
