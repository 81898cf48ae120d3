"""The openrlhf engine's launcher, config section, entry-point flags and reward file (no OpenRLHF import)."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from pathlib import Path

import pytest

from dynamo.config import load_config
from dynamo.engines.openrlhf import launcher
from dynamo.engines.openrlhf.config import OpenRLHFConfig
from dynamo.engines.openrlhf.entry import split_argv
from dynamo.engines.registry import config_check
from dynamo.methods import all_methods

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ["qwen2.5-math-7b", "qwen2.5-math-1.5b"]


def gpu_config(name: str = "qwen2.5-math-7b", **overrides):
    cfg = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "experiments" / f"{name}.yaml")
    if overrides:
        from dynamo.config import config_from_dict

        data = dataclasses.asdict(cfg)
        for key, value in overrides.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) else value
        cfg = config_from_dict(data)
    return cfg


def flag(cmd: list[str], name: str, count: int = 1):
    i = cmd.index(name)
    return cmd[i + 1] if count == 1 else cmd[i + 1 : i + 1 + count]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_registered_method_maps_to_a_command(experiment, tmp_path):
    cfg = gpu_config(experiment)
    # Rules that down-select samples after rollout run in the local engine only; the launcher refuses
    # them by name. This list is exact, so that it cannot grow unnoticed.
    local_only = {name for name, spec in all_methods().items() if launcher.local_only(spec)}
    assert local_only == {"pods", "reinforce-ada", "reinforce-ada-pos"}
    for name in sorted(local_only):
        with pytest.raises(ValueError, match="local engine only"):
            launcher.build_command(cfg, name, 1, str(tmp_path / name))
    for name in sorted(set(all_methods()) - local_only):
        cmd = launcher.build_command(cfg, name, 1, str(tmp_path / name))
        assert cmd[1:3] == ["-m", "dynamo.engines.openrlhf.entry"] and flag(cmd, "--dynamo.method") == name
        spec = cfg.method(name)
        eps = [float(x) for x in flag(cmd, "--actor.eps_clip_low_high", 2)]
        assert eps == [spec.loss.eps_low, spec.loss.eps_high]
        assert ("--algo.dynamic_filtering_enable" in cmd) == (spec.group_filter.kind == "dynamic_sampling")
        assert ("--reward.overlong_buffer_len" in cmd) == (spec.reward_shaping.overlong_buffer_fraction > 0)
        assert "--train.async_enable" not in cmd


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_validates_for_the_engine(experiment, monkeypatch):
    cfg = gpu_config(experiment)
    assert config_check("openrlhf") is launcher.validate  # what config validation runs for this engine
    launcher.validate(cfg)
    # it builds the command of every method the experiment trains ...
    built = []
    with monkeypatch.context() as m:
        m.setattr(launcher, "build_command", lambda cfg, name, *args, **kw: built.append(name))
        launcher.validate(cfg)
    assert sorted(built) == sorted({*cfg.methods, *cfg.ablation_methods, *cfg.allocation_methods})  # each once
    # ... and so fails on what could not run, e.g. a budget that is no whole number of mini-batches
    odd = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, mini_batch_prompts=24))
    with pytest.raises(ValueError, match=r"budget N\*n = 8192 is not a whole number of mini-batches of 384"):
        launcher.validate(odd)


def test_a_local_only_method_in_table_4s_list_is_refused_naming_the_list():
    with pytest.raises(ValueError, match=r"'pods'.*local engine only.*allocation_methods"):
        launcher.validate(gpu_config(allocation_methods=["grpo", "pods"]))


def test_7b_dynamo_command_carries_the_authors_settings(tmp_path):
    cfg = gpu_config()
    cmd = launcher.build_command(cfg, "dynamo", 1, str(tmp_path / "run"))
    assert flag(cmd, "--rollout.batch_size") == "512" and flag(cmd, "--rollout.n_samples_per_prompt") == "16"
    assert flag(cmd, "--train.batch_size") == "512"  # 32 prompts x 16
    assert flag(cmd, "--actor.adam.lr") == "1e-06" and flag(cmd, "--actor.adam.weight_decay") == "0.1"
    assert flag(cmd, "--actor.max_norm") == "1" and flag(cmd, "--algo.kl.init_coef") == "0"
    assert flag(cmd, "--rollout.temperature") == "1" and flag(cmd, "--actor.dual_clip") == "10"
    assert flag(cmd, "--algo.advantage.estimator") == "group_norm"
    # Warm-up of 10 RL steps = 160 optimizer steps out of 200 x 16, after OpenRLHF's ceil().
    assert math.ceil(200 * 16 * float(flag(cmd, "--actor.lr_warmup_ratio"))) == 160
    assert flag(cmd, "--dynamo.max_steps") == "200"
    assert flag(cmd, "--reward.remote_url").endswith("dynamo/engines/openrlhf/reward_func.py")


def test_dry_run_through_dynamo_train_prints_the_command(capsys, tmp_path):
    from dynamo.cli import main

    configs = [str(ROOT / "config" / "config.yaml"), str(ROOT / "config" / "experiments" / "qwen2.5-math-7b.yaml")]
    rc = main(
        [
            "train",
            "--engine",
            "openrlhf",
            "--config",
            *configs,
            "--method",
            "dynamo",
            "--seed",
            "1",
            "--out",
            str(tmp_path / "x"),
            "--dry-run",
        ]
    )
    assert rc == 0
    printed = shlex.split(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed[1:3] == ["-m", "dynamo.engines.openrlhf.entry"] and "--ds.packing_samples" in printed
    assert not (tmp_path / "x").exists()  # a dry run starts nothing and writes nothing


def test_unsupported_spec_fails_at_launch_by_name(tmp_path, monkeypatch):
    # Rejected as soon as the config is loaded (config validation calls the launcher's check).
    with pytest.raises(ValueError, match="group_filter.kind='dynamic_sampling'"):
        cfg = gpu_config(method_overrides={"dynamo": {"group_filter": {"kind": "dynamic_sampling"}}})
        launcher.build_command(cfg, "dynamo", 1, str(tmp_path))
    # A spec field the engine does not know (as a future MethodSpec field would be) is named too.
    monkeypatch.setattr(launcher, "SUPPORTED_FIELDS", launcher.SUPPORTED_FIELDS - {"modulation.alpha"})
    with pytest.raises(ValueError, match=r"cannot express: modulation.alpha=0.4"):
        cfg = gpu_config(method_overrides={"dynamo": {"modulation": {"alpha": 0.4}}})
        launcher.build_command(cfg, "dynamo", 1, str(tmp_path))


def test_openrlhf_section_is_validated():
    with pytest.raises(ValueError, match="unknown field openrlhf.gpus"):
        OpenRLHFConfig.from_dict({"gpus": 8})
    with pytest.raises(ValueError, match="colocate_all"):
        OpenRLHFConfig.from_dict({"vllm_num_engines": 4})
    with pytest.raises(ValueError, match="repeat flags"):
        launcher.build_command(gpu_config(openrlhf={"extra_args": ["--rollout.batch_size", "8"]}), "grpo", 1, "r")
    with pytest.raises(ValueError, match="micro-batches"):
        launcher.build_command(
            gpu_config(openrlhf={"micro_train_batch_size": 7, "dynamic_batch": False}), "grpo", 1, "r"
        )


def test_entry_strips_its_own_flags():
    own, rest = split_argv(
        [
            "--dynamo.method",
            "dynamo",
            "--rollout.batch_size",
            "8",
            "--dynamo.overrides={}",
            "--train.colocate_all",
            "--dynamo.max_steps",
            "3",
        ]
    )
    assert own == ["--dynamo.method", "dynamo", "--dynamo.overrides={}", "--dynamo.max_steps", "3"]
    assert rest == ["--rollout.batch_size", "8", "--train.colocate_all"]


def test_prompt_file_applies_the_template(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join(json.dumps({"problem": f"{i}+{i}", "answer": [str(2 * i)]}) for i in range(3)))
    cfg = gpu_config(data={"train_path": str(pool)})
    out = tmp_path / "run" / launcher.PROMPTS_FILE
    assert launcher.write_prompts(cfg, out) == 3
    first = json.loads(out.read_text().splitlines()[1])
    assert first["label"] == "2" and first["prompt"].startswith("1+1\nPlease reason step by step")


def test_reward_function_grades_the_response_only():
    from dynamo.engines.openrlhf.reward_func import response_text, reward_func

    prompt = "<|im_start|>user\nWhat is 2+2? Put it in \\boxed{}.<|im_end|>\n<|im_start|>assistant\n"
    assert response_text(prompt + "So \\boxed{4}.<|im_end|><|endoftext|>", prompt) == "So \\boxed{4}."
    out = reward_func(
        [prompt + "So \\boxed{4}.<|im_end|>", prompt + "It is \\boxed{5}."], [prompt, prompt], ["4", "4"]
    )
    assert out["rewards"].tolist() == [1.0, 0.0] and out["scores"].tolist() == [1.0, 0.0]


def test_wandb_flags_are_openrlhfs_own_and_off_by_default(tmp_path, capsys):
    assert not any(a.startswith("--logger.wandb") for a in launcher.build_command(gpu_config(), "grpo", 1, "r"))
    cfg = gpu_config(logger={"wandb": {"enabled": True, "mode": "offline", "project": "p", "entity": "team"}})
    cmd = launcher.build_command(cfg, "dynamo", 2, str(tmp_path / "run"))
    assert flag(cmd, "--logger.wandb.key") == launcher.WANDB_KEY_PLACEHOLDER  # never the real key
    assert flag(cmd, "--logger.wandb.project") == "p" and flag(cmd, "--logger.wandb.org") == "team"
    assert flag(cmd, "--logger.wandb.run_name") == "dynamo-seed2"
    assert flag(cmd, "--logger.wandb.group") == cfg.experiment
    env = launcher.wandb_env(cfg, tmp_path / "run")
    assert env == {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "run")}
    # Each flag is one that OpenRLHF 0.11.2's PPO entry point declares.
    import importlib.util

    spec = importlib.util.find_spec("openrlhf")  # locates the package without importing it
    if spec is None:
        pytest.skip("openrlhf not installed")
    source = (Path(spec.origin).parent / "cli" / "train_ppo_ray.py").read_text()
    for arg in (a for a in cmd if a.startswith("--logger.wandb")):
        assert f'"{arg}"' in source, arg
    launcher.launch(cfg, "dynamo", 2, str(tmp_path / "run"), dry_run=True)
    assert capsys.readouterr().out.startswith(f"WANDB_MODE=offline WANDB_DIR={tmp_path / 'run'} ")
