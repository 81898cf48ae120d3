# Configuration (validated twice: the JSON schema, generated from dynamo/config.py, and the typed
# config's cross-field checks), paths and helpers shared by every rule.
import dataclasses
from pathlib import Path

import yaml
from snakemake.utils import validate

from dynamo.config import ConfigError, config_from_dict, config_problems, read_config_files

# `--config fresh_runs=true` arrives as a string.
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
if str(config.get("fresh_runs")).lower() in _BOOL_WORDS:
    config["fresh_runs"] = _BOOL_WORDS[str(config["fresh_runs"]).lower()]
# Every problem at once, one line each, before any job (the schema below is a second net).
_problems = read_config_files(workflow.configfiles)[1]
_problems += config_problems(config)[1] if not _problems else []
if _problems:
    raise ConfigError(_problems)
validate(config, "../schemas/config.schema.yaml")
CFG = config_from_dict(config)
# fresh_runs is a one-off instruction, not part of the experiment: kept out of the resolved config
# and passed to the train rule as a flag (see train.smk) so that toggling it reruns no job.
RESOLVED_CONFIG = {k: v for k, v in dataclasses.asdict(CFG).items() if k != "fresh_runs"}
EXP = CFG.experiment
RUN = f"runs/{EXP}/{{method}}/seed{{seed}}"
TASK = CFG.task_dir
ARITH_SPLITS = ["arith-easy", "arith-medium", "arith-hard", "arith-id"]
# "base" is the model every run starts from, evaluated like a method as the table's reference row.
# The mechanism probes (table 3) compare the probed method's entropy trajectory with this one's.
STAB_OFF = "dynamo-nostab"
ALL_METHODS = sorted({*CFG.methods, *CFG.ablation_methods, *CFG.allocation_methods, CFG.probe.method, STAB_OFF})


wildcard_constraints:
    method="|".join(["base", *ALL_METHODS]),
    seed=r"\d+",
    step=r"\d+",
    bench=r"[A-Za-z0-9_.-]+",


def benchmark_labels():
    return [item.split("=", 1)[0] for item in CFG.eval.benchmarks]


def benchmark_spec():
    """--benchmarks argument of `dynamo evaluate`: the embedded splits are local files."""
    items = []
    for item in CFG.eval.benchmarks:
        if "=" not in item and CFG.data.task == "arithmetic" and item in ARITH_SPLITS:
            item = f"{item}={TASK}/{item}.jsonl"
        items.append(item)
    return ",".join(items)


def local_benchmark_files():
    return [item.split("=", 1)[1] for item in benchmark_spec().split(",") if "=" in item]


def base_model_input():
    """The base model as a pipeline input when the pipeline builds or stages it (a hub id is no file)."""
    return [CFG.base_model_path] if (CFG.model.build_tiny or CFG.warmstart.enabled or STAGE.model) else []


def resources_of(rule_name):
    """Snakemake resources that the Slurm executor plugin turns into sbatch flags.

    A GPU job is one task holding all of the rule's CPUs (`--cpus-per-task=threads`) and GPUs on one
    node (`--nodes=1 --gpus=G`). `tasks_per_gpu: 0` switches off the plugin's default
    `--ntasks-per-gpu=1`, which would start one task per GPU, each with `threads` CPUs (G x threads
    CPUs on one node)."""
    r = getattr(CFG.resources, rule_name)
    res = {"mem_mb": r.mem_mb, "runtime": r.runtime}
    if r.gpus:
        res.update(gpu=r.gpus, nodes=1, tasks_per_gpu=0)
    return res


def train_resources():
    """The train rule's resources: one node as resources_of, or one allocation of N whole nodes.

    N = openrlhf.actor_num_nodes > 1: `--nodes=N --ntasks=N --cpus-per-task=threads --gres=gpu:G/N`,
    i.e. one task per node with `threads` CPUs and G/N GPUs on each node (GRES counts per node, so
    Slurm cannot split the GPUs unevenly; resources.train.gpus is the total, checked against the
    actor layout). `mpi` makes the jobstep plugin run the job's command in the batch step on the first
    node instead of inside its own one-task `srun` step, so that multinode.py can start one Ray worker
    per other node with `srun --overlap` in the same allocation."""
    res = resources_of("train")
    n = int(CFG.openrlhf.get("actor_num_nodes", 1)) if CFG.engine == "openrlhf" else 1
    if n > 1:
        per_node = CFG.resources.train.gpus // n
        res = {k: v for k, v in res.items() if k != "gpu"}
        res.update(nodes=n, tasks=n, tasks_per_gpu=0, gres=f"gpu:{per_node}", mpi="srun")
    return res


def checkpoints_to_prune():
    """Markers of the runs whose checkpoints rule prune_run_checkpoints deletes (opt-in, openrlhf engine)."""
    if CFG.engine != "openrlhf" or not CFG.openrlhf.get("delete_checkpoints_after_eval", False):
        return []
    methods = sorted({*CFG.methods, *CFG.ablation_methods})
    return expand(f"runs/{EXP}/{{method}}/seed{{seed}}/ckpt.deleted", method=methods, seed=CFG.seeds)


def scores(methods):
    return expand(
        f"runs/{EXP}/{{method}}/seed{{seed}}/eval/{{bench}}/scores.json",
        method=methods,
        seed=CFG.seeds,
        bench=benchmark_labels(),
    )


def model_to_evaluate(wildcards):
    if wildcards.method == "base":
        return base_model_input()
    return f"runs/{EXP}/{wildcards.method}/seed{wildcards.seed}/final"


def runs_root(path):
    """runs/<experiment> from any file below runs/<experiment>/<method>/seed<s>/."""
    parts = Path(path).parts
    return str(Path(*parts[: parts.index("runs") + 2]))


def train_setup(method):
    """What decides a training run's result, as one deterministic string (the train rule's params)."""
    import json

    sections = {k: dataclasses.asdict(getattr(CFG, k)) for k in ("train", "data", "model", "warmstart")}
    sections["train"].pop("threads")
    sections["train"].pop("checkpoint_every")
    return json.dumps({"method": CFG.method(method).to_dict(), "engine": CFG.engine, **sections}, sort_keys=True)


def token_matched_scores(experiment, benchmarks):
    """Input function: score files of the token-matched runs the experiment's plan asks for (known once
    the plan is written)."""

    def files(wildcards):
        from dynamo.reporting.token_budget import read_plan, reruns

        plan = checkpoints.table4_token_plan.get(t4exp=experiment).output[0]
        return [
            f"runs/{experiment}-token-matched/{method}/seed{seed}/eval/{bench}/scores.json"
            for method, seed, _ in reruns(read_plan(plan))
            for bench in benchmarks
        ]

    return files
