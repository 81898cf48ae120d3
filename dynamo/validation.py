"""The checks of an experiment config across fields, before any compute: every problem at once.

`dynamo.config.config_problems(data)` is the one entry point: pydantic (`dynamo.schema`) checks
every field's type, bounds and name against the dataclasses, reporting all of them, and
`semantic_problems` below then checks what no single field can say, on the valid fields (invalid ones
at their defaults). This module imports no config class and no engine (the config imports it;
engines are asked through `dynamo.engines.registry`). Each problem is one line that names the
field (`config.train.lr`, `method dynamo: loss.eps_low`) or the path; the order is fixed (field
order, then sorted names), so the same config always gives the same lines.

What is checked here:
- every method used is valid with its overrides (the spec's field ranges and `__post_init__`,
  through `dynamo.spec.apply_overrides`) and its allocation bounds are feasible for the batch;
- every name is registered (methods, benchmarks; NAME=PATH with a readable file for a new NAME);
- every local path exists (model.path, data.train_path, benchmark files);
- seeds are distinct;
- cross-field constraints (mini-batch <= batch, the allocation study's design, the engine's own
  check: the openrlhf section and batch layout, the train job's GPUs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from dynamo.engines.registry import config_check

MAX_SEED = 2**32 - 1
# Generated tokens per run above which --check warns that the local engine (one process) is the
# wrong tool; ~6k tokens/s was measured for the tiny CPU model, a 1.5B model is ~100x slower.
LOCAL_TOKENS_WARNING = 10**8
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".txt", ".yaml", ".yml")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


# ---------------------------------------------------------------------------------------
# Paths


def seed_problem(flag: str, seed: int) -> str | None:
    """A seed given on the command line outside numpy's seed range (checked before anything is written)."""
    if not 0 <= seed <= MAX_SEED:
        return f"{flag} {seed}: a seed must be an integer in [0, {MAX_SEED}]"
    return None


def looks_local(path: str) -> bool:
    """True when `path` can only mean a local file or directory (not a hub id such as org/name)."""
    return (
        path.startswith(("/", ".", "~"))
        or "\\" in path
        or path.count("/") >= 2
        or path.lower().endswith(DATA_SUFFIXES)
        or not _HUB_ID.match(path)
    )


def path_problem(field: str, path: str, *, hub_allowed: bool, what: str) -> str | None:
    """None when `path` exists locally (or may be a hub id); else a message naming the field and path."""
    expanded = os.path.expanduser(path)
    if os.path.exists(expanded):
        if not os.access(expanded, os.R_OK):
            return f"{field}: {path} is not readable"
        return None
    if hub_allowed and not looks_local(path):
        return None  # a hub id: checked when it is downloaded
    hint = " and is no hub id" if hub_allowed else ""
    return f"{field}: {what} {path} does not exist{hint} (relative paths are from {os.getcwd()})"


# ---------------------------------------------------------------------------------------
# The whole config


def _study_problems(cfg: Any, known: dict[str, Any]) -> list[str]:
    """The allocation study's section: registered arms, a paired design, a pool it can generate. (That its
    experiment name differs from the main one is checked by workflow/rules/study.smk: the study's own
    resolved config has both equal.)"""
    from dynamo.tasks.arithmetic import validate_sizes

    st, where = cfg.study_allocation, "config.study_allocation"
    problems = []
    problems += [f"{where}.arms: unknown method {a!r}" for a in st.arms if a not in known]
    for key in ("baseline", "positive_control"):
        if getattr(st, key) not in st.arms:
            problems.append(f"{where}.{key} {getattr(st, key)!r} is not one of the arms {st.arms}")
    if len(st.seeds) < 2 or len(set(st.seeds)) != len(st.seeds):
        problems.append(f"{where}.seeds must be at least two distinct integers (paired intervals), got {st.seeds}")
    try:
        validate_sizes(st.pool_size, st.eval_size, 1, st.level_weights)
    except ValueError as err:
        problems.append(f"{where}: {err}")
    return problems


def semantic_problems(cfg: Any) -> tuple[list[str], list[str]]:
    """(problems, warnings) across fields: registered names, seeds, batches, allocation, paths, engine."""
    from dynamo.core.rules import make_rule
    from dynamo.methods import all_methods, get_method
    from dynamo.spec import apply_overrides

    problems: list[str] = []
    warnings: list[str] = []
    known = all_methods()
    for key in ("methods", "ablation_methods", "allocation_methods"):
        names = getattr(cfg, key)
        if key == "methods" and not names:
            problems.append("config.methods must name at least one method")
        for i, name in enumerate(names):
            if name not in known:
                try:
                    get_method(name)
                except ValueError as err:
                    problems.append(f"config.{key}[{i}]: {err}")
    for name in sorted(cfg.method_overrides):
        if name not in known:
            problems.append(f"config.method_overrides.{name}: unknown method; known: {', '.join(sorted(known))}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        problems.append(f"config.seeds must be a non-empty list of distinct integers, got {cfg.seeds}")
    if cfg.probe.method not in known:
        problems.append(
            f"config.probe.method: unknown method {cfg.probe.method!r}; known: {', '.join(sorted(known))}"
        )
    problems += _study_problems(cfg, known)

    t = cfg.train
    if t.mini_batch_prompts > t.prompts_per_step:
        problems.append(
            f"config.train.mini_batch_prompts ({t.mini_batch_prompts}) > "
            f"train.prompts_per_step ({t.prompts_per_step})"
        )
    # Where each method is listed, so that a problem of a method the user did not name in `methods`
    # (table 4's or the study's default list) says which list to trim.
    lists = {
        "methods": cfg.methods,
        "ablation_methods": cfg.ablation_methods,
        "allocation_methods": cfg.allocation_methods,
        "study_allocation.arms": cfg.study_allocation.arms,
        "method_overrides": list(cfg.method_overrides),
    }
    listed_in = {name: [key for key, names in lists.items() if name in names] for name in known}
    used = sorted(name for name in known if listed_in[name])
    for name in used:
        where = f" (listed in {', '.join(listed_in[name])})"
        overrides = cfg.method_overrides.get(name) or {}
        try:  # the registered spec, overridden and validated (ranges, __post_init__): one line per problem
            apply_overrides(known[name], overrides, where=f"method {name}:")
        except ValueError as err:
            problems += getattr(err, "problems", [f"method {name}: {err}"])
            continue
        try:  # what the registries add: the allocation rule and its params, the policy loss
            spec = get_method(name, overrides)
        except ValueError as err:
            problems.append(f"method {name}: {err}")
            continue
        spec_problems = []
        try:
            spec.allocation.per_prompt(t.rollouts_per_prompt)
        except ValueError as err:
            spec_problems.append(f"method {name}: {err}")
        problems += spec_problems
        if not spec_problems:
            try:
                rule = make_rule(spec.allocation)
            except ValueError as err:
                problems.append(f"method {name}: {err}")
                continue
            n = spec.allocation.per_prompt(t.rollouts_per_prompt)
            n_low, n_high = rule.bounds(n)
            try:
                rule.check_feasible(t.prompts_per_step, n)
            except ValueError as err:
                problems.append(
                    f"method {name}: allocation bounds [{n_low}, {n_high}] from "
                    f"train.rollouts_per_prompt={t.rollouts_per_prompt}: {err}{where}"
                )

    problems += _path_problems(cfg)
    problems += _benchmark_problems(cfg)
    engine_check = config_check(cfg.engine)
    if engine_check is not None and not problems:
        try:
            engine_check(cfg)  # openrlhf: its section, batch divisibility, every method expressible
        except ValueError as err:
            problems += [f"config.{cfg.engine}: {line}" for line in getattr(err, "problems", [str(err)])]
        else:
            problems += _train_gpu_problems(cfg) if cfg.engine == "openrlhf" else []

    tokens = t.steps * t.prompts_per_step * t.rollouts_per_prompt * t.max_new_tokens
    if cfg.engine == "local" and tokens > LOCAL_TOKENS_WARNING:
        warnings.append(
            f"train: up to {tokens:.2g} generated tokens per run (steps x prompts x rollouts x max_new_tokens) "
            f"in one process; the local engine makes ~6e3 tokens/s with the tiny model, far fewer with a real one"
        )
    return problems, warnings


def _path_problems(cfg: Any) -> list[str]:
    problems = []
    if cfg.data.task == "prompts":
        if not cfg.data.train_path:
            problems.append("config.data.train_path is required when data.task is 'prompts'")
        else:
            # The local engine reads a file; OpenRLHF's loader also takes a hub dataset id.
            p = path_problem(
                "config.data.train_path",
                cfg.data.train_path,
                hub_allowed=cfg.engine == "openrlhf",
                what="prompt file",
            )
            problems += [p] if p else []
    if not cfg.model.build_tiny:
        if not cfg.model.path:
            problems.append("config.model.path is required when model.build_tiny is false")
        else:
            p = path_problem("config.model.path", cfg.model.path, hub_allowed=True, what="model directory")
            problems += [p] if p else []
    return problems


def _benchmark_problems(cfg: Any) -> list[str]:
    from dynamo.tasks.benchmarks import BENCHMARKS

    problems = []
    if not cfg.eval.benchmarks:
        problems.append("config.eval.benchmarks must name at least one benchmark")
    labels: list[str] = []
    for i, item in enumerate(cfg.eval.benchmarks):
        field = f"config.eval.benchmarks[{i}]"
        name, has_path, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            problems.append(f"{field}: benchmark name {name!r} must match [A-Za-z0-9_.-]+")
            continue
        if name in labels:
            problems.append(f"{field}: benchmark {name} listed twice")
        labels.append(name)
        if has_path:
            if not path:
                problems.append(f"{field}: {item!r} names no file after '='")
            else:
                p = path_problem(field, path, hub_allowed=False, what=f"benchmark file for {name}:")
                problems += [p] if p else []
            continue
        spec = BENCHMARKS.get(name)
        if spec is None:
            problems.append(
                f"{field}: unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))} "
                f"(or NAME=PATH for a local file)"
            )
        elif spec.hub_id is None and not (cfg.data.task == "arithmetic" and name.startswith("arith-")):
            problems.append(f"{field}: benchmark {name} has no hub copy; give its file as {name}=PATH")
    return problems


# ---------------------------------------------------------------------------------------
# `python -m dynamo.config --check`: the human summary


def config_summary(cfg: Any) -> list[str]:
    t, m = cfg.train, cfg.model
    methods = list(dict.fromkeys([*cfg.methods, *cfg.ablation_methods]))
    runs = len(methods) * len(cfg.seeds)
    model = (
        f"tiny ({m.tiny_layers} layers, hidden {m.tiny_hidden})" if m.build_tiny else f"{m.path} ({m.dtype})"
    ) + (f" + warm start {cfg.warmstart.steps} steps" if cfg.warmstart.enabled else "")
    data = (
        f"arithmetic (pool {cfg.data.pool_size}, seed {cfg.data.seed})"
        if cfg.data.task == "arithmetic"
        else f"prompts from {cfg.data.train_path}"
    )
    tokens = t.steps * t.prompts_per_step * t.rollouts_per_prompt * t.max_new_tokens
    return [
        f"config OK: experiment {cfg.experiment!r}, engine {cfg.engine}",
        f"  runs:  {len(methods)} methods x {len(cfg.seeds)} seeds = {runs} training runs ({', '.join(methods)})",
        f"  model: {model}; data: {data}",
        f"  train: {t.steps} steps x {t.prompts_per_step} prompts x {t.rollouts_per_prompt} rollouts, "
        f"lr {t.lr:g}; up to {tokens:.3g} generated tokens per run",
        f"  eval:  {', '.join(cfg.eval.benchmarks)}; {cfg.eval.samples} samples per problem",
    ]


def empty_file_problem(path: str | Path, data: Any) -> str | None:
    if data is None or data == {}:
        return f"{path}: the config file is empty (give at least one field, or leave the file out)"
    if not isinstance(data, dict):
        return f"{path}: a config file must be a mapping, got {type(data).__name__}"
    return None


def _train_gpu_problems(cfg) -> list[str]:
    """The train job's Slurm request must hold the actor layout: resources.train.gpus is the total over
    all nodes (the train rule asks gpus / actor_num_nodes per node)."""
    from dynamo.engines.openrlhf.config import OpenRLHFConfig

    o = OpenRLHFConfig.from_dict(cfg.openrlhf)
    gpus = cfg.resources.train.gpus
    if gpus and gpus != o.actor_gpus:
        return [
            f"config.resources.train.gpus = {gpus} does not match openrlhf.actor_num_nodes x actor_gpus_per_node "
            f"= {o.actor_num_nodes} x {o.actor_gpus_per_node} = {o.actor_gpus} (gpus is the total over all nodes)"
        ]
    return []
