# Configuration (validated twice: the JSON schema, generated from dynamo/config.py, and the typed
# config's cross-field checks), paths and helpers shared by every rule.
import dataclasses
from pathlib import Path

import yaml
from snakemake.utils import validate

from dynamo.config import config_from_dict

validate(config, "../schemas/config.schema.yaml")
CFG = config_from_dict(config)
EXP = CFG.experiment
RUN = f"runs/{EXP}/{{method}}/seed{{seed}}"
TASK = CFG.task_dir
ARITH_SPLITS = ["arith-easy", "arith-medium", "arith-hard", "arith-id"]
# "base" is the model every run starts from, evaluated like a method as the table's reference row.
# The mechanism probes (table 3) compare the probed method's entropy trajectory with this one's.
STAB_OFF = "dynamo-nostab"
ALL_METHODS = sorted({*CFG.methods, *CFG.ablation_methods, CFG.probe.method, STAB_OFF})


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
    """The base model as a pipeline input when the pipeline builds it (a hub id is no file)."""
    return [CFG.base_model_path] if (CFG.model.build_tiny or CFG.warmstart.enabled) else []


def resources_of(rule_name):
    r = getattr(CFG.resources, rule_name)
    res = {"mem_mb": r.mem_mb, "runtime": r.runtime}
    if r.gpus:
        res["gpu"] = r.gpus
    return res


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
