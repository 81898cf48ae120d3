"""Typed experiment configuration: one dataclass per section, help text and bounds next to each field.

The same YAML drives Snakemake (`config/config.yaml`, overridden by `--configfile
config/experiments/<name>.yaml`) and the `dynamo` subcommands. Types, bounds (`ge`, `gt`, `le`,
`pattern`: pydantic's names) and unknown names are checked by pydantic (`dynamo.schema`); the
checks across fields by `dynamo.validation.semantic_problems`; `config_problems` is the one entry
point for both. The JSON schema that Snakemake validates against
(`workflow/schemas/config.schema.yaml`) is pydantic's schema of these dataclasses (`python -m
dynamo.config --write-schema`); a test checks it is up to date, so the dataclasses are the single
source of truth. Bad values fail here, before any compute.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, with_config

from dynamo import schema
from dynamo.methods import get_method
from dynamo.schema import FIELDS, ConfigError, checked_build
from dynamo.schema import documented as _f
from dynamo.validation import MAX_SEED, config_summary, empty_file_problem, semantic_problems

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


# numpy's seed range
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


@with_config(FIELDS)
@dataclass(frozen=True)
class ModelConfig:
    path: str = _f(
        "", "Base model when build_tiny is false: a local directory or a hub id (Qwen/Qwen2.5-Math-7B)."
    )
    build_tiny: bool = _f(
        True, "Build the tiny character-level model (at models/<experiment>/init) instead of loading `path`."
    )
    tiny_layers: int = _f(2, "Tiny model: transformer layers.", ge=1, le=128)
    tiny_hidden: int = _f(128, "Tiny model: hidden size.", ge=8, le=16384)
    tiny_heads: int = _f(4, "Tiny model: attention heads.", ge=1, le=256)
    dtype: Literal["float32", "bfloat16", "float16"] = _f("float32", "Training dtype of the policy.")


@with_config(FIELDS)
@dataclass(frozen=True)
class WarmstartConfig:
    enabled: bool = _f(
        True, "Run a short supervised warm start on the task's SFT file before RL (embedded default)."
    )
    steps: int = _f(
        3000, "Optimizer steps of the warm start (fixed count, so it is deterministic).", ge=1, le=10**7
    )
    lr: float = _f(1.5e-3, "Warm-start peak learning rate (warm-up, then cosine decay).", gt=0, le=1)
    batch_size: int = _f(32, "Warm-start batch size (sequences).", ge=1, le=65536)


@with_config(FIELDS)
@dataclass(frozen=True)
class DataConfig:
    task: Literal["arithmetic", "prompts"] = _f(
        "arithmetic", "arithmetic: generate the embedded task; prompts: read an RL prompt set from `train_path`."
    )
    train_path: str = _f(
        "",
        "task=prompts: the RL prompt pool, a local JSONL/JSON/parquet file (local engine) or a hub dataset id "
        "(openrlhf engine). task=arithmetic: ignored, the pool is generated at data/<experiment>/train.jsonl.",
    )
    seed: int = _f(0, "Arithmetic task: seed of the generated problems (shared by every run).", ge=0, le=MAX_SEED)
    pool_size: int = _f(
        1024,
        "Arithmetic task: problems in the training pool (small enough that prompts recur).",
        ge=1,
        le=10**7,
    )
    eval_size: int = _f(100, "Arithmetic task: problems per held-out split.", ge=1, le=10**6)
    template: str = _f("{problem}=", "Prompt template; {problem} is replaced by the problem text.")
    use_chat_template: bool = _f(False, "Wrap the prompt with the tokenizer's chat template (Qwen2.5-Math: true).")


@with_config(FIELDS)
@dataclass(frozen=True)
class TrainConfig:
    steps: int = _f(200, "RL steps (one rollout batch each).", ge=1, le=10**6)
    prompts_per_step: int = _f(32, "Prompts per rollout batch, N (paper: 512).", ge=1, le=65536)
    rollouts_per_prompt: int = _f(
        4, "Uniform per-prompt count n; the budget is B = N * n (paper: 16).", ge=1, le=4096
    )
    mini_batch_prompts: int = _f(16, "Prompts per optimiser mini-batch (paper: 32).", ge=1, le=65536)
    micro_batch_sequences: int = _f(
        128,
        "Sequences per forward/backward micro-batch (memory only, gradients accumulate).",
        ge=1,
        le=10**6,
    )
    ppo_epochs: int = _f(1, "Passes over each rollout batch (paper: 1).", ge=1, le=100)
    lr: float = _f(5e-5, "Adam learning rate (paper: 1e-6 for 7B).", gt=0, le=1)
    warmup_steps: int = _f(0, "Linear learning-rate warm-up steps, then constant (paper: 10).", ge=0, le=10**6)
    weight_decay: float = _f(0.0, "AdamW weight decay (paper: 0.1).", ge=0, le=10)
    grad_clip: float = _f(1.0, "Gradient-norm clip (paper: 1.0).", gt=0)
    temperature: float = _f(1.0, "Rollout sampling temperature (paper: 1.0).", gt=0, le=100)
    top_p: float = _f(1.0, "Rollout nucleus sampling top_p (paper: 1.0).", gt=0, le=1)
    max_new_tokens: int = _f(16, "Longest response in tokens.", ge=1, le=10**6)
    checkpoint_every: int = _f(
        10, "Write a resumable checkpoint every this many steps (and at the end).", ge=1, le=10**6
    )
    threads: int = _f(
        1, "torch.set_num_threads for a local run (Snakemake passes the rule's threads).", ge=1, le=4096
    )
    snapshot_steps: list[Annotated[int, Field(ge=0, le=10**6)]] = _f(
        [0, 100, 200],
        "Local engine, runs of probe.method only: steps after which the whole trainer state is also "
        "copied to <run>/snapshots/step<k>/ (0 = before the first update; steps past train.steps are "
        "ignored); the mechanism probes read them.",
    )


@with_config(FIELDS)
@dataclass(frozen=True)
class EvalConfig:
    benchmarks: list[str] = _f(
        ["arith-easy", "arith-medium", "arith-hard", "arith-id"],
        "Benchmarks to evaluate: registry names, or NAME=PATH to read a local file.",
    )
    samples: int = _f(
        8, "Samples per problem, n (paper: 32); Pass@k is reported for k = 1 and k = n.", ge=1, le=4096
    )
    temperature: float = _f(1.0, "Sampling temperature at evaluation.", gt=0, le=100)
    top_p: float = _f(1.0, "Nucleus sampling top_p at evaluation.", gt=0, le=1)
    max_new_tokens: int = _f(16, "Longest evaluated response in tokens.", ge=1, le=10**6)
    backend: Literal["hf", "vllm"] = _f("hf", "Generation backend: hf (CPU/GPU) or vllm (GPU).")
    batch_size: int = _f(256, "Sequences per generation batch.", ge=1, le=10**6)
    limit: int = _f(0, "Evaluate only the first `limit` problems of each benchmark (0 = all).", ge=0, le=10**7)
    over_long: Literal["reject", "skip"] = _f(
        "reject",
        "A problem whose prompt does not fit the model's context (positions minus max_new_tokens): reject = "
        "stop before sampling with one line naming it; skip = leave it out, listed in the log and scores.json.",
    )


@with_config(FIELDS)
@dataclass(frozen=True)
class ProbeConfig:
    method: str = _f("dynamo", "Run whose policy snapshots the mechanism probes read (`dynamo probe`).")
    seeds: list[Seed] = _f([1], "Seeds of that run to probe (each a separate job).")
    prompt_sets: int = _f(2, "Allocation probe: independent prompt sets per snapshot.", ge=1)
    batches: int = _f(32, "Allocation probe: independent rollout batches per scheme and prompt set.", ge=4)
    step_batches: int = _f(4, "One-step probes: rollout batches per snapshot.", ge=2)
    confident_quantile: float = _f(
        0.2,
        "Compensation probe: lowest-entropy share of the A > 0 tokens (entropy > 1e-3) called confident.",
        gt=0,
        le=1,
    )


@with_config(FIELDS)
@dataclass(frozen=True)
class RuleResources:
    threads: int = _f(1, "Threads (CPU cores) for the rule, per node (Slurm: --cpus-per-task).", ge=1, le=4096)
    gpus: int = _f(
        0,
        "GPUs for the rule, the total over all its nodes (Slurm: --gpus, or --gres per node).",
        ge=0,
        le=4096,
    )
    mem_mb: int = _f(2000, "Memory in MB.", ge=1, le=10**8)
    runtime: int = _f(30, "Wall-time limit in minutes.", ge=1, le=10**6)


@with_config(FIELDS)
@dataclass(frozen=True)
class ResourcesConfig:
    data: RuleResources = _f(RuleResources(mem_mb=1000, runtime=10), "Resources of the data rules.")
    warmstart: RuleResources = _f(RuleResources(threads=2, runtime=20), "Resources of the warm-start rule.")
    train: RuleResources = _f(RuleResources(), "Resources of each training run.")
    evaluate: RuleResources = _f(RuleResources(runtime=20), "Resources of each evaluation run.")
    probe: RuleResources = _f(RuleResources(mem_mb=3000, runtime=30), "Resources of each mechanism-probe job.")


@with_config(FIELDS)
@dataclass(frozen=True)
class WandbConfig:
    enabled: bool = _f(False, "Log training metrics to Weights & Biases too (needs `pip install wandb`).")
    mode: Literal["offline", "online"] = _f(
        "offline", "offline: write runs/<exp>/<method>/seed<s>/wandb/ only (no network; `wandb sync` later)."
    )
    project: str = _f("dynamo", "W&B project.")
    entity: str = _f("", "W&B entity (team or user); empty: your default entity.")


@with_config(FIELDS)
@dataclass(frozen=True)
class LoggerConfig:
    wandb: WandbConfig = _f(
        WandbConfig(), "Optional Weights & Biases tracker: the same metric names as metrics.jsonl."
    )


@with_config(FIELDS)
@dataclass(frozen=True)
class ReportConfig:
    paper_reference: Literal["", "Qwen2.5-Math-1.5B", "Qwen2.5-Math-7B"] = _f(
        "",
        "Published model row of the DynaMO paper's main table to print beside the reproduced cells of "
        "results/table1.md (GPU configs); empty: no comparison.",
    )


@with_config(FIELDS)
@dataclass(frozen=True)
class StudyAllocationConfig:
    """The powered allocation study (docs/STUDY_ALLOCATION.md): its own pool, arms, seeds and endpoint.

    Not part of `rule all`; `snakemake results/study_allocation.csv` runs it. It starts from the
    experiment's start model (models/<experiment>/warmstart) and inherits every other setting."""

    experiment: str = _f(
        "study-allocation",
        "Experiment name of the study: its pool in data/<this>, its runs in runs/<this>/<arm>/seed<s>; "
        "must differ from `experiment` so that the study's runs never collide with the main job's.",
        pattern=r"^[A-Za-z0-9_.-]+$",
    )
    arms: list[str] = _f(
        ["grpo", "dynamo-nomod", "dynamo", "grpo-1.5x"],
        "Methods compared, by registered name; each runs once per seed.",
    )
    baseline: str = _f("grpo", "The arm every other arm is compared with (paired by seed).")
    positive_control: str = _f(
        "grpo-1.5x",
        "Arm with a known advantage over the baseline (1.5x its rollout budget). If the study cannot "
        "resolve it, it reports itself underpowered.",
    )
    seeds: list[Seed] = _f(
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
        "Seeds; every arm runs once per seed (sets prompt order and evaluation sampling).",
    )
    steps: int = _f(200, "RL steps of every study run (train.steps of the study).", ge=1, le=10**6)
    level_weights: list[Annotated[float, Field(ge=0)]] = _f(
        [1.0, 1.0, 1.0, 2.5, 1.0, 2.5],
        "Share of arithmetic levels 1..6 in the study's pool (and its in-distribution split). Levels 4 and 6 "
        "(multi-digit products, 0% solved by the start model: arith-hard) make 56% of the pool, and a few "
        "percent of the other levels' prompts are never or always solved: about 60% of the pool gives "
        "uniform groups no spread, the heterogeneity allocation exploits. The report measures the share.",
    )
    pool_size: int = _f(1024, "Problems in the study's training pool.", ge=1, le=10**7)
    eval_size: int = _f(
        500, "Problems per held-out split of the study (the endpoint split among them).", ge=1, le=10**6
    )
    eval_samples: int = _f(
        16,
        "Samples per endpoint problem (16: evaluation sampling stays a minor part of the paired variance; "
        "500 x 16 costs about 19 s of CPU per run).",
        ge=1,
        le=4096,
    )
    endpoint: Literal["final_id_pass1"] = _f(
        "final_id_pass1",
        "Primary endpoint, fixed before the study is run: final_id_pass1 = the final model's Pass@1 "
        "(percent) on the in-distribution split arith-id (the pool's level mix, eval_size problems x "
        "eval_samples samples). Every verdict of results/study_allocation is about this number only.",
    )
    mde_target: float = _f(
        1.0,
        "Design target: the minimum detectable effect (points of the endpoint, 95% two-sided, 80% power) "
        "the study should reach; the report prints the achieved MDE beside it.",
        gt=0,
    )
    start_samples: int = _f(
        16, "Samples per pool prompt when measuring the start model's per-prompt pass rates.", ge=2
    )
    extreme_band: float = _f(
        0.1,
        "A pool prompt counts as near-solved (pass rate >= 1 - band) or unsolvable (<= band) at the start.",
        ge=0,
        le=0.5,
    )


@with_config(FIELDS)
@dataclass(frozen=True)
class ExperimentConfig:
    experiment: str = _f(
        "embedded",
        "Experiment name: runs go to runs/<experiment>/<method>/seed<seed>.",
        pattern=r"^[A-Za-z0-9_.-]+$",
    )
    engine: Literal["local", "openrlhf"] = _f(
        "local", "Training engine: local (one process, transformers) or openrlhf (Ray cluster)."
    )
    methods: list[str] = _f(["grpo", "dapo", "dynamo"], "Methods for table 1, by registered name.")
    ablation_methods: list[str] = _f(
        [
            "dynamo",
            "dynamo-nocomp",
            "dynamo-nostab",
            "dynamo-posscale",
            "dynamo-nomod",
            "dynamo-uniform",
            "dynamo-sqrtp",
            "dynamo-released-floors",
            "dynamo-coldstart",
            "dynamo-minibatch",
            "dynamo-eps028",
        ],
        "Methods for table 2 (ablations and released-code switches), by registered name.",
    )
    allocation_methods: list[str] = _f(
        ["grpo", "dapo", "dynamo-nomod", "vip", "knapsack-rl", "greso", "pods", "reinforce-ada"],
        "Methods for table 4 (rollout-allocation methods compared with grpo when listed: at equal rollouts per "
        "step, and in table4_tokens at equal generated tokens), by registered name; runs shared with tables 1 "
        "and 2 are reused. Not part of `snakemake all`.",
    )
    seeds: list[Seed] = _f([1, 2, 3], "Seeds; every method runs once per seed.")
    method_overrides: dict[str, Any] = _f({}, "Per-method overrides, e.g. {dynamo: {loss: {eps_high: 0.28}}}.")
    model: ModelConfig = _f(ModelConfig(), "Base model.")
    warmstart: WarmstartConfig = _f(WarmstartConfig(), "Supervised warm start (embedded default).")
    data: DataConfig = _f(DataConfig(), "Training prompts and task data.")
    train: TrainConfig = _f(TrainConfig(), "RL training.")
    eval: EvalConfig = _f(EvalConfig(), "Evaluation.")
    probe: ProbeConfig = _f(ProbeConfig(), "Mechanism probes at saved policy snapshots (results/table3).")
    resources: ResourcesConfig = _f(ResourcesConfig(), "Per-rule compute resources (used by the Slurm profile).")
    openrlhf: dict[str, Any] = _f({}, "OpenRLHF engine settings (see dynamo.engines.openrlhf.config).")
    logger: LoggerConfig = _f(LoggerConfig(), "Experiment trackers beside metrics.jsonl and TensorBoard.")
    report: ReportConfig = _f(ReportConfig(), "Results tables.")
    study_allocation: StudyAllocationConfig = _f(
        StudyAllocationConfig(), "The powered allocation study (results/study_allocation; not in `rule all`)."
    )
    fresh_runs: bool = _f(
        False,
        "Retrain from step 0 any run whose checkpoint was made with a different fingerprint (config, model, "
        "data, code) or is damaged beyond fallback, instead of refusing (`dynamo train --fresh`; "
        "docs/RESUMING.md). Once: snakemake ... --config fresh_runs=true.",
    )

    def method(self, name: str):
        """The registered method `name` with this experiment's overrides applied."""
        return get_method(name, self.method_overrides.get(name))

    def run_dir(self, method: str, seed: int) -> str:
        return f"runs/{self.experiment}/{method}/seed{seed}"

    @property
    def task_dir(self) -> str:
        """Where the embedded arithmetic task's files are generated."""
        return f"data/{self.experiment}"

    @property
    def train_pool_path(self) -> str:
        return f"{self.task_dir}/train.jsonl" if self.data.task == "arithmetic" else self.data.train_path

    @property
    def init_model_path(self) -> str:
        """The model RL (or the warm start) begins from before any training of ours."""
        return f"models/{self.experiment}/init" if self.model.build_tiny else self.model.path

    @property
    def base_model_path(self) -> str:
        """The model every RL run starts from: the warm-started model, or the initial one."""
        return f"models/{self.experiment}/warmstart" if self.warmstart.enabled else self.init_model_path


# ---------------------------------------------------------------------------------------
# Loading and validation


def config_problems(data: dict[str, Any] | None) -> tuple[Any, list[str], list[str]]:
    """(ExperimentConfig or None, problems, warnings) for a nested config dict; never raises."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [f"config must be a mapping, got {type(data).__name__}"], []
    cfg, problems = checked_build(ExperimentConfig, data, "config")
    if cfg is None:
        return None, problems, []
    # the cross-field checks run on the valid fields (invalid ones at their defaults): all problems at once
    semantic, warnings = semantic_problems(cfg)
    problems += [p for p in semantic if p not in problems]
    return (None if problems else cfg), problems, warnings


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from a (possibly partial) nested dict.

    Raises ConfigError (a ValueError) listing every problem, one line each (dynamo.validation)."""
    cfg, problems, _ = config_problems(data or {})
    if problems:
        raise ConfigError(problems)
    return cfg


def read_config_files(paths: list[str | Path] | tuple[str | Path, ...]) -> tuple[dict[str, Any], list[str]]:
    """Merge YAML files left to right (later wins, nested mappings merged): (merged dict, file problems).

    An empty file is a problem (it silently meant "defaults" before), as are unreadable or non-YAML files."""
    merged: dict[str, Any] = {}
    problems: list[str] = []
    for path in paths:
        try:
            with open(path) as fh:
                data = yaml.safe_load(fh)
        except OSError as err:
            problems.append(f"{path}: {err.strerror or err}")
            continue
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            problems.append(f"{path}: not valid YAML ({' '.join(str(err).split())})")
            continue
        problem = empty_file_problem(path, data)
        if problem:
            problems.append(problem)
            continue
        merged = _deep_merge(merged, data)
    return merged, problems


def load_config(*paths: str | Path) -> ExperimentConfig:
    """Merge YAML files left to right (later wins, nested mappings merged) into a validated config."""
    merged, problems = read_config_files(paths)
    if problems:
        raise ConfigError(problems)
    try:
        return config_from_dict(merged)
    except ConfigError as err:
        raise ConfigError([f"{', '.join(map(str, paths))}: {p}" for p in err.problems]) from None


def check_main(paths: list[str]) -> int:
    """Validate the merged files; print the summary (exit 0) or one line per problem (exit 1)."""
    data, problems = read_config_files(paths)
    cfg, more, warnings = config_problems(data) if not problems else (None, [], [])
    problems += more
    for line in problems:
        print(f"error: {line}")
    for line in warnings:
        print(f"warning: {line}")
    if problems:
        print(f"{len(problems)} problem(s) in {', '.join(map(str, paths))}; nothing was run")
        return 1
    print("\n".join(config_summary(cfg)))
    return 0


def _deep_merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in new.items():
        out[key] = (
            _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


# ---------------------------------------------------------------------------------------
# JSON schema generated from the dataclasses (for Snakemake's validate())


def json_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "DynaMO experiment configuration (generated from dynamo/config.py).",
        **schema.json_schema(ExperimentConfig),
    }


def write_schema(path: Path = SCHEMA_PATH) -> None:
    header = "# Generated by `python -m dynamo.config --write-schema` from dynamo/config.py; do not edit.\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(json_schema(), sort_keys=False, width=110))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Config utilities.")
    parser.add_argument(
        "--write-schema", action="store_true", help=f"(re)write {SCHEMA_PATH.relative_to(REPO_ROOT)}"
    )
    parser.add_argument("--check", nargs="*", metavar="YAML", help="validate config files (merged in order)")
    args = parser.parse_args()
    if args.write_schema:
        write_schema()
    if args.check:
        raise SystemExit(check_main(args.check))
