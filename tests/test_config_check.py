"""Bad configs fail before any compute, through `python -m dynamo.config --check` and `snakemake -n`,
each with a message naming the field or path; all problems at once; deterministic messages."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import pytest
from repo_copy import ROOT, copy_repo

from dynamo.config import check_main

# (name, YAML merged over config/config.yaml, text the message must contain)
BAD_CONFIGS = [
    ("lr_nan", "train: {lr: .nan}", "config.train.lr must be a finite number"),
    ("lr_inf", "train: {lr: .inf}", "config.train.lr must be a finite number"),
    ("temperature_inf", "train: {temperature: .inf}", "config.train.temperature"),
    ("steps_absurd", "train: {steps: 1000000000000}", "config.train.steps must be <= 1000000"),
    ("steps_zero", "train: {steps: 0}", "config.train.steps must be >= 1"),
    ("top_p_above_1", "train: {top_p: 1.5}", "config.train.top_p must be <= 1"),
    ("lr_not_a_number", "train: {lr: fast}", "config.train.lr must be of type float"),
    ("unknown_field", "train: {stepz: 3}", "unknown field config.train.stepz"),
    (
        "eps_low_above_1",
        "method_overrides: {dynamo: {loss: {eps_low: 1.5}}}",
        "method dynamo: loss.eps_low must be",
    ),
    ("eps_low_neg", "method_overrides: {grpo: {loss: {eps_low: -0.1}}}", "method grpo: loss.eps_low"),
    ("dual_clip_neg", "method_overrides: {grpo: {loss: {dual_clip: -3}}}", "method grpo: loss.dual_clip"),
    ("dual_clip_lt_1", "method_overrides: {grpo: {loss: {dual_clip: 0.5}}}", "loss.dual_clip must be"),
    ("alpha_neg", "method_overrides: {dynamo: {modulation: {alpha: -1}}}", "method dynamo: modulation.alpha"),
    ("lambda_min_gt_1", "method_overrides: {dynamo: {modulation: {lambda_min: 1.5}}}", "modulation.lambda_min"),
    (
        "lambda_min_0",
        "method_overrides: {dynamo: {modulation: {lambda_min: 0}}}",
        "modulation.lambda_min must be > 0",
    ),
    ("tau_nan", "method_overrides: {dynamo: {modulation: {tau: .nan}}}", "method dynamo: modulation.tau"),
    (
        "policy_loss_unknown",
        "method_overrides: {grpo: {loss: {policy_loss: nosuch}}}",
        "method grpo: unknown loss.policy_loss 'nosuch'",
    ),
    (
        "stabilization_needs_token_clip",
        "method_overrides: {dynamo: {loss: {policy_loss: gspo}}}",
        "method dynamo: modulation.stabilization needs loss.policy_loss 'ppo_clip'",
    ),
    (
        "gspo_fork_clip_cov",
        "method_overrides: {clip-cov: {loss: {policy_loss: gspo}, fork_tokens: {top_fraction: 0.2}}}",
        "method clip-cov: loss.policy_loss 'gspo' with fork_tokens and covariance.kind 'clip_cov'",
    ),
    ("refill_0", "method_overrides: {dapo: {group_filter: {max_refill_rounds: 0}}}", "max_refill_rounds"),
    (
        "overlong_1",
        "method_overrides: {dapo: {reward_shaping: {overlong_buffer_fraction: 1.0}}}",
        "overlong_buffer",
    ),
    ("n_low_high", "method_overrides: {dynamo: {allocation: {n_low: 9}}}", "method dynamo: allocation bounds"),
    ("override_unknown", "method_overrides: {nosuch: {loss: {eps_low: 0.1}}}", "config.method_overrides.nosuch"),
    ("method_unknown", "methods: [grpo, dynamoo]", "config.methods[1]: unknown method 'dynamoo'"),
    ("ablation_unknown", "ablation_methods: [xyz]", "config.ablation_methods[0]: unknown method 'xyz'"),
    (
        "allocation_unknown",
        "allocation_methods: [grpo, vipp]",
        "config.allocation_methods[1]: unknown method 'vipp'",
    ),
    (
        "rollouts_1",
        "train: {rollouts_per_prompt: 1}",
        "method dynamo: allocation bounds [0, 1] from train.rollouts",
    ),
    (
        # a method only table 4's default list holds: the problem says which list to trim
        "rollouts_2_table4",
        "train: {rollouts_per_prompt: 2}\nmethods: [grpo]\nablation_methods: []",
        "every prompt needs at least 2 responses (listed in allocation_methods)",
    ),
    ("seed_negative", "seeds: [-1, 2]", "config.seeds[0] must be >= 0"),
    ("seed_repeated", "seeds: [1, 1]", "config.seeds must be a non-empty list of distinct"),
    (
        "benchmark_unknown",
        "eval: {benchmarks: [aime2077]}",
        "config.eval.benchmarks[0]: unknown benchmark 'aime2077'",
    ),
    ("benchmark_no_file", "eval: {benchmarks: ['new=/nonexistent/new.jsonl']}", "/nonexistent/new.jsonl does not"),
    ("benchmarks_empty", "eval: {benchmarks: []}", "config.eval.benchmarks must name at least one"),
    ("samples_0", "eval: {samples: 0}", "config.eval.samples must be >= 1"),
    ("model_missing", "model: {build_tiny: false, path: /nonexistent/model}", "/nonexistent/model does not exist"),
    ("prompt_file_missing", "data: {task: prompts, train_path: missing.jsonl}", "missing.jsonl does not exist"),
    ("prompt_file_required", "data: {task: prompts}", "config.data.train_path is required"),
    ("mini_batch_gt_batch", "train: {mini_batch_prompts: 64}", "config.train.mini_batch_prompts (64) >"),
    ("engine_unknown", "engine: verl", "config.engine must be one of"),
    ("experiment_name", "experiment: 'a b'", "config.experiment must match"),
    ("warmstart_lr_neg", "warmstart: {lr: -1.0}", "config.warmstart.lr must be > 0"),
    ("mem_0", "resources: {train: {mem_mb: 0}}", "config.resources.train.mem_mb must be >= 1"),
    ("empty_file", "", "the config file is empty"),
]


# Where Snakemake itself refuses the file before our checks run, its own message is expected.
SNAKEMAKE_MESSAGES = {"empty_file": "Config file must be given as JSON or YAML with keys at top level"}


def run_check(tmp_path, name: str, text: str) -> tuple[int, str]:
    bad = tmp_path / f"{name}.yaml"
    bad.write_text(text + "\n")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = check_main([str(ROOT / "config" / "config.yaml"), str(bad)])
    return rc, out.getvalue()


def test_there_are_at_least_30_bad_configs():
    assert len(BAD_CONFIGS) >= 30 and len({n for n, *_ in BAD_CONFIGS}) == len(BAD_CONFIGS)


@pytest.mark.parametrize("name, text, message", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_check_fails_naming_the_field(tmp_path, monkeypatch, name, text, message):
    monkeypatch.chdir(tmp_path)  # relative paths in the configs are resolved from here
    rc, out = run_check(tmp_path, name, text)
    assert rc == 1, out
    assert message in out, out
    assert "Traceback" not in out and out.splitlines()[-1].endswith("nothing was run")
    assert all(line.startswith(("error: ", "warning: ")) for line in out.splitlines()[:-1]), out


def test_every_problem_is_reported_at_once_in_a_fixed_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "train: {lr: .nan, rollouts_per_prompt: 1}\nseeds: [-1]\neval: {benchmarks: [foo]}"
    runs = [run_check(tmp_path, "many", text) for _ in range(2)]
    assert runs[0] == runs[1]  # deterministic (no set order in messages)
    errors = [line for line in runs[0][1].splitlines() if line.startswith("error: ")]
    assert len(errors) >= 4
    for field in (
        "config.train.lr",
        "config.seeds[0]",
        "train.rollouts_per_prompt=1",
        "config.eval.benchmarks[0]",
    ):
        assert any(field in line for line in errors), field


def test_check_summary_on_success_and_cli_exit_codes(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "dynamo.config", "--check", "config/config.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("config OK: experiment 'embedded', engine local")
    assert "ExperimentConfig(" not in ok.stdout and len(ok.stdout.splitlines()) <= 8
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: .nan}\n")
    fail = subprocess.run(
        [sys.executable, "-m", "dynamo.config", "--check", "config/config.yaml", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert fail.returncode == 1 and "Traceback" not in fail.stdout + fail.stderr
    assert "error: config/config.yaml, " not in fail.stdout  # one line per problem, the field named
    assert "error: config.train.lr must be a finite number, got nan" in fail.stdout


def snakemake_dry_run_in_process(repo, configfile) -> str:
    """What `snakemake -n results/table1.csv --configfile FILE` does, through Snakemake's API in this
    process (one import instead of one per config); returns the error text, or "" if none."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    try:
        with SnakemakeApi(OutputSettings(quiet=None)) as api:
            workflow = api.workflow(
                resource_settings=ResourceSettings(cores=1),
                config_settings=ConfigSettings(configfiles=[configfile]),
                snakefile=repo / "Snakefile",
                workdir=repo,
            )
            workflow.dag(DAGSettings(targets={"results/table1.csv"})).execute_workflow(executor="dryrun")
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return ""


@pytest.mark.timeout(1800)
def test_snakemake_dry_run_fails_before_any_job_for_every_bad_config(tmp_path, monkeypatch):
    """The same configs through Snakemake's dry run: each fails while the workflow loads, before
    any job is planned, with the field or path in the message; one of them through the real
    `snakemake -n` command line too."""
    repo = copy_repo(tmp_path / "repo")
    (tmp_path / "bad").mkdir()
    monkeypatch.chdir(repo)
    failures = []
    for name, text, message in BAD_CONFIGS:
        message = SNAKEMAKE_MESSAGES.get(name, message)
        path = tmp_path / "bad" / f"{name}.yaml"
        path.write_text(text + "\n")
        error = snakemake_dry_run_in_process(repo, path)
        if message not in error:
            failures.append(f"{name}: expected {message!r}, got: {error[-1500:]!r}")
    assert not failures, "\n\n".join(failures)

    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "results/table1.csv",
        "--configfile",
        str(tmp_path / "bad" / "lr_nan.yaml"),
    ]
    out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=1200)
    assert out.returncode != 0 and "config.train.lr must be a finite number" in out.stdout + out.stderr
    assert "Job stats" not in out.stdout + out.stderr
