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
    r = getattr(CFG.resources, rule_name)
    res = {"mem_mb": r.mem_mb, "runtime": r.runtime}
    if r.gpus:
        res["gpu"] = r.gpus
    return res


def train_nodes():
    """A multi-node openrlhf run asks Slurm for its nodes, one task each (Ray workers, multinode.py)."""
    n = int(CFG.openrlhf.get("actor_num_nodes", 1)) if CFG.engine == "openrlhf" else 1
    return {"nodes": n, "tasks": n} if n > 1 else {}


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
