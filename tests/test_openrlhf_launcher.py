"""The openrlhf engine's launcher, config section, entry-point flags and reward file (no OpenRLHF import)."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import shlex
from pathlib import Path

import pytest

from dynamo.config import load_config
from dynamo.core.rules import make_rule
from dynamo.engines.openrlhf import launcher
from dynamo.engines.openrlhf.config import OpenRLHFConfig
from dynamo.engines.openrlhf.entry import split_argv
from dynamo.engines.openrlhf.spec_file import SPEC_FILE, spec_digest, spec_from_dict
from dynamo.engines.registry import config_check
from dynamo.methods import all_methods, get_method
from dynamo.spec import MethodSpec

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
    t = cfg.train
    for name in sorted(all_methods()):  # every registered method runs in this engine
        cmd = launcher.build_command(cfg, name, 1, str(tmp_path / name))
        spec = cfg.method(name)
        # Mini-batches of mini_batch_prompts groups' trained samples (PODS: m of each group's n), so a
        # step takes N / mini_batch_prompts optimizer updates per epoch, as in the local engine.
        n = spec.allocation.per_prompt(t.rollouts_per_prompt)
        trained = make_rule(spec.allocation).trained_per_prompt(n)
        assert int(flag(cmd, "--train.batch_size")) == t.mini_batch_prompts * trained
        assert t.prompts_per_step * trained // int(flag(cmd, "--train.batch_size")) == (
            t.prompts_per_step // t.mini_batch_prompts
        )
        # The spec travels as a file named on the command line, with its digest; no name to look up again.
        assert cmd[1:3] == ["-m", "dynamo.engines.openrlhf.entry"] and "--dynamo.method" not in cmd
        assert flag(cmd, "--dynamo.spec") == str((tmp_path / name / SPEC_FILE).resolve())
        assert flag(cmd, "--dynamo.spec_sha256") == spec_digest(spec)
        # Only the flags OpenRLHF's own code needs are derived from it; no spec setting round-trips.
        assert ("--algo.dynamic_filtering_enable" in cmd) == (spec.group_filter.kind == "dynamic_sampling")
        assert ("--algo.kl.use_loss" in cmd) == (spec.loss.kl_coef > 0)
        owned = [a for a in cmd if a in launcher.SPEC_OWNED_FLAGS]
        assert set(owned) <= {"--algo.advantage.estimator", "--algo.kl.init_coef", "--algo.kl.use_loss"} | {
            "--algo.kl.estimator",
            "--algo.dynamic_filtering_enable",
            "--algo.dynamic_filtering_range",
        }, owned
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
    with pytest.raises(ValueError, match=r"8192 trained samples \(N \* 16\) are not a whole number of mini-b"):
        launcher.validate(odd)


def test_the_gpu_configs_list_every_allocation_method_for_this_engine():
    for experiment in EXPERIMENTS:
        assert {"pods", "reinforce-ada"} <= set(gpu_config(experiment).allocation_methods)


def test_a_method_this_engine_cannot_run_in_table_4s_list_is_refused_naming_the_list():
    """PODS with DAPO's refills (no registered method combines them) is refused, naming the list."""
    overrides = {"pods": {"group_filter": {"kind": "dynamic_sampling"}}}
    with pytest.raises(ValueError, match=r"'pods' with group_filter.kind='dynamic_sampling'.*allocation_methods"):
        launcher.validate(gpu_config(allocation_methods=["grpo", "pods"], method_overrides=overrides))


def test_pods_trains_on_m_per_prompt_with_grpos_number_of_updates(tmp_path):
    """PODS (m = 4 of n = 16): --train.batch_size = 32 prompts x 4, so the step's 512 x 4 kept samples
    make 16 optimizer updates, as GRPO's 512 x 16 do (the count the controller's scheduler uses)."""
    cfg = gpu_config()
    for name, trained in (("pods", 4), ("grpo", 16), ("reinforce-ada", 16)):
        cmd = launcher.build_command(cfg, name, 1, str(tmp_path / name))
        train_batch = int(flag(cmd, "--train.batch_size"))
        assert train_batch == 32 * trained
        assert launcher.updates_per_step(make_rule(cfg.method(name).allocation), 512, 16, train_batch) == 16
        # warm-up of 10 RL steps = 160 optimizer steps out of 200 x 16, after OpenRLHF's ceil()
        assert math.ceil(200 * 16 * float(flag(cmd, "--actor.lr_warmup_ratio"))) == 160


def test_7b_dynamo_command_carries_the_authors_settings(tmp_path):
    cfg = gpu_config()
    cmd = launcher.build_command(cfg, "dynamo", 1, str(tmp_path / "run"))
    assert flag(cmd, "--rollout.batch_size") == "512" and flag(cmd, "--rollout.n_samples_per_prompt") == "16"
    assert flag(cmd, "--train.batch_size") == "512"  # 32 prompts x 16
    assert flag(cmd, "--actor.adam.lr") == "1e-06" and flag(cmd, "--actor.adam.weight_decay") == "0.1"
    assert flag(cmd, "--actor.max_norm") == "1" and flag(cmd, "--algo.kl.init_coef") == "0"
    assert flag(cmd, "--rollout.temperature") == "1"
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


def test_unsupported_spec_fails_at_launch_by_name(tmp_path):
    # Rejected as soon as the config is loaded (config validation calls the launcher's check).
    with pytest.raises(ValueError, match="group_filter.kind='dynamic_sampling'"):
        cfg = gpu_config(method_overrides={"dynamo": {"group_filter": {"kind": "dynamic_sampling"}}})
        launcher.build_command(cfg, "dynamo", 1, str(tmp_path))
    # A stock flag for a setting the spec owns would be ignored by the patched code: refused, by name.
    with pytest.raises(ValueError, match=r"method spec owns.*--actor.eps_clip_low_high"):
        cfg = gpu_config(openrlhf={"extra_args": ["--actor.eps_clip_low_high", "0.2", "0.3"]})
        launcher.build_command(cfg, "dynamo", 1, str(tmp_path))


def test_a_spec_section_nothing_carries_out_is_refused_by_name(monkeypatch):
    """The check is derived from what the core's mechanisms declare: every registered method passes,
    and a section whose mechanism were missing would be refused when set."""
    assert launcher.carried_sections() >= {f.name for f in dataclasses.fields(MethodSpec)}
    for spec in all_methods().values():
        launcher.check_supported(spec)
    monkeypatch.setattr(launcher, "spec_sections", lambda: frozenset({"loss", "window", "modulation"}))
    launcher.check_supported(get_method("grpo"))  # covariance at its default: nothing to carry out
    with pytest.raises(ValueError, match=r"cannot express: covariance=CovarianceSpec\(kind='clip_cov'"):
        launcher.check_supported(get_method("clip-cov"))


def test_the_resolved_spec_reaches_the_openrlhf_side_once_as_a_file(tmp_path, monkeypatch):
    """launch writes the resolved spec (overrides applied) atomically; the entry's options read it back
    equal, its digest is the one of the fingerprint's method dict, and a changed file is refused."""
    from dynamo.engines.openrlhf.entry import parse_own
    from dynamo.fingerprint import compute

    cfg = gpu_config(method_overrides={"dynamo": {"loss": {"eps_high": 0.28}}})
    run = tmp_path / "run"
    calls = []
    monkeypatch.setattr(launcher, "write_prompts", lambda cfg, path: 7)
    monkeypatch.setattr(launcher, "_run_training", lambda cmd, o, env: calls.append(cmd) or 1)  # rc 1: no summary
    assert launcher.launch(cfg, "dynamo", 1, str(run), dry_run=False) == 1
    (cmd,) = calls
    options, _ = parse_own(split_argv(cmd[3:])[0])
    spec = options.method_spec()
    assert spec == cfg.method("dynamo") and spec.loss.eps_high == 0.28
    fingerprint = compute(cfg, "dynamo", 1, "some/hub-model", "openrlhf")
    digest = hashlib.sha256(json.dumps(fingerprint["method"], sort_keys=True).encode()).hexdigest()
    assert options.spec_sha256 == digest
    assert not list((run / SPEC_FILE).parent.glob("*.tmp"))  # written atomically: no leftovers
    edited = json.loads((run / SPEC_FILE).read_text())
    edited["loss"]["eps_high"] = 0.2
    (run / SPEC_FILE).write_text(json.dumps(edited))
    with pytest.raises(RuntimeError, match="changed after the launch"):
        options.method_spec()
    (run / SPEC_FILE).unlink()
    with pytest.raises(RuntimeError, match="cannot read the method spec"):
        options.method_spec()


def test_every_registered_spec_survives_the_file():
    for name, spec in all_methods().items():
        assert spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec, name


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
            "--dynamo.spec",
            "/run/openrlhf/method_spec.json",
            "--rollout.batch_size",
            "8",
            "--dynamo.spec_sha256=ab12",
            "--train.colocate_all",
            "--dynamo.max_steps",
            "3",
        ]
    )
    assert own == ["--dynamo.spec", "/run/openrlhf/method_spec.json", "--dynamo.spec_sha256=ab12"] + [
        "--dynamo.max_steps",
        "3",
    ]
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


SPEC_SECTIONS = {f.name for f in dataclasses.fields(MethodSpec) if dataclasses.is_dataclass(f.default)}


def spec_reads(sources: list[str]) -> set[str]:
    """Spec settings that engine code reads itself: "section.field" for `<x>.section.field`, and
    "section" where a whole section is handed on (to a core function or a local name)."""
    out = set()
    for source in sources:
        tree = ast.parse(source)
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in SPEC_SECTIONS:
                parent = parents.get(node)
                whole = not (isinstance(parent, ast.Attribute) and parent.value is node)
                out.add(node.attr if whole else f"{node.attr}.{parent.attr}")
    return out


def test_spec_settings_the_local_engine_reads_reach_the_openrlhf_engine():
    """What replaces a hand-kept list of supported fields. Both engines receive the whole spec and hand
    it to the same core functions (the parity test covers those for every method); what each engine
    implements in its own code (DAPO's refill loop, the allocation bookkeeping, the step normaliser)
    must be read on both sides: every spec setting the local engine's code reads, the OpenRLHF
    engine's code reads too (the field itself, or its whole section handed on)."""
    engines = ROOT / "dynamo" / "engines"
    local = spec_reads([p.read_text() for p in sorted((engines / "local").glob("*.py"))])
    openrlhf = spec_reads([p.read_text() for p in sorted((engines / "openrlhf").glob("*.py"))])
    assert {"group_filter.kind", "group_filter.max_refill_rounds", "loss.entropy_coef"} <= local
    missing = {r for r in local if r not in openrlhf and r.split(".")[0] not in openrlhf}
    assert not missing, f"spec settings the local engine implements and the openrlhf engine never reads: {missing}"
    # the check sees a setting read by one engine only
    extra = spec_reads(["def f(self):\n    return self.method.group_filter.min_spread\n"])
    assert extra == {"group_filter.min_spread"} and "group_filter.min_spread" not in openrlhf
