"""Complete validation of an experiment config before any compute: every problem at once.

`dynamo.config.config_problems(data)` builds the typed config field by field with
`checked_build`, so one bad field does not hide the next, and returns (config or None, problems,
warnings). This module imports no config class and no engine (the config imports it; engines
are asked through `dynamo.engines.registry`). Each problem is one line that names
the field (`config.train.lr`, `method dynamo: loss.eps_low`) or the path; the order is fixed
(field order, then sorted names), so the same config always gives the same lines.

What is checked, beyond the JSON schema (which Snakemake also applies):
- every number is finite and inside its range (dataclass metadata in dynamo/config.py; the
  method-spec ranges below, since dynamo/methods.py keeps its specs free of validation);
- every name is registered (methods, benchmarks; NAME=PATH with a readable file for a new NAME);
- every local path exists (model.path, data.train_path, benchmark files);
- seeds are distinct and in [0, 2^32 - 1] (numpy's seed range);
- cross-field constraints (mini-batch <= batch, feasible allocation bounds, openrlhf mapping).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamo.engines.registry import config_check
from dynamo.spec import flat_fields

MAX_SEED = 2**32 - 1
# Generated tokens per run above which --check warns that the local engine (one process) is the
# wrong tool; ~6k tokens/s was measured for the tiny CPU model, a 1.5B model is ~100x slower.
LOCAL_TOKENS_WARNING = 10**8
DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".txt", ".yaml", ".yml")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


class ConfigError(ValueError):
    """A config with problems; `problems` has one line each, the message joins them."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Range:
    """A closed/open interval on a number, optionally allowing None (null in YAML)."""

    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    optional: bool = False

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None if self.optional else "must be a number, got null"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if (
            not math.isfinite(value)
            or (value <= self.lo if self.lo_open else value < self.lo)
            or (value >= self.hi if self.hi_open else value > self.hi)
        ):
            return f"must be {self.describe()}, got {value!r}"
        return None

    def describe(self) -> str:
        parts = []
        if self.lo > -math.inf:
            parts.append(f"> {_num(self.lo)}" if self.lo_open else f">= {_num(self.lo)}")
        if self.hi < math.inf:
            parts.append(f"< {_num(self.hi)}" if self.hi_open else f"<= {_num(self.hi)}")
        text = " and ".join(parts) if parts else "finite"
        if parts and len(parts) == 1:
            text = f"finite and {text}"
        return f"{text} or null" if self.optional else text


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


# Valid ranges of the method-spec fields (dynamo/methods.py), by dotted field name.
METHOD_RANGES: dict[str, Range] = {
    "allocation.n_low": Range(1, optional=True),
    "allocation.n_high": Range(1, optional=True),
    "allocation.min_history": Range(0),
    "allocation.mastery_threshold": Range(0, 1, optional=True),
    "allocation.weight_floor": Range(0),
    "advantage.eps": Range(0),
    "group_filter.max_refill_rounds": Range(1, 1000),
    "modulation.alpha": Range(0),
    "modulation.lambda_min": Range(0, 1, lo_open=True),
    "modulation.gamma": Range(0),
    "modulation.tau": Range(0, 1),
    "loss.eps_low": Range(0, 1),  # 1 = no lower clip (Clip-Cov's reference clip range)
    "loss.eps_high": Range(0),
    "loss.dual_clip": Range(1, lo_open=True, optional=True),
    "loss.entropy_coef": Range(0),
    "loss.kl_coef": Range(0),
    "reward_shaping.overlong_buffer_fraction": Range(0, 1, hi_open=True),
    "reward_shaping.overlong_penalty": Range(0),
}


def method_problems(spec: Any, where: str) -> list[str]:
    """Range problems of a MethodSpec: every numeric field finite, the ones above in range."""
    problems = []
    for name, value in flat_fields(dataclasses.asdict(spec)).items():
        rule = METHOD_RANGES.get(name)
        if rule is None:
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"{where}: {name} must be finite, got {value!r}")
            continue
        message = rule.problem(value)
        if message:
            problems.append(f"{where}: {name} {message}")
    return problems


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


def checked_build(base: Any, data: dict[str, Any], where: str) -> tuple[Any, list[str]]:
    """`base` with every valid field of `data` applied; one problem per invalid field."""
    from dynamo.methods import apply_overrides

    known = [f.name for f in dataclasses.fields(base)]
    problems = [
        f"unknown field {where}.{key}; known: {', '.join(known)}"
        for key in sorted(map(str, set(data) - set(known)))
    ]
    changes: dict[str, Any] = {}
    for key in known:
        if key not in data:
            continue
        value, current = data[key], getattr(base, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            sub, sub_problems = checked_build(current, value, f"{where}.{key}")
            problems += sub_problems
            changes[key] = sub
            continue
        try:
            changes[key] = getattr(apply_overrides(base, {key: value}, where=where), key)
        except ValueError as err:
            problems.append(str(err))
    return dataclasses.replace(base, **changes), problems


def bound_problems(obj: Any, where: str) -> list[str]:
    """The schema bounds stored in field metadata (minimum, maximum, exclusiveMinimum, pattern,
    items), plus: every float finite."""
    problems = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{where}.{f.name}"
        if dataclasses.is_dataclass(value):
            problems += bound_problems(value, name)
        elif isinstance(value, list) and "items" in f.metadata:
            for i, item in enumerate(value):
                problems += _value_problems(f"{name}[{i}]", item, f.metadata["items"])
        else:
            problems += _value_problems(name, value, f.metadata)
    return problems


def _value_problems(name: str, value: Any, meta: typing.Mapping[str, Any]) -> list[str]:
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{name} must be a finite number, got {value!r}"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in meta and value < meta["minimum"]:
            return [f"{name} must be >= {meta['minimum']}, got {value}"]
        if "exclusiveMinimum" in meta and value <= meta["exclusiveMinimum"]:
            return [f"{name} must be > {meta['exclusiveMinimum']}, got {value}"]
        if "maximum" in meta and value > meta["maximum"]:
            return [f"{name} must be <= {meta['maximum']}, got {value}"]
    if isinstance(value, str) and "pattern" in meta and not re.match(meta["pattern"], value):
        return [f"{name} must match {meta['pattern']}, got {value!r}"]
    return []


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
    if any(s < 0 for s in cfg.probe.seeds):
        problems.append(f"config.probe.seeds must be >= 0, got {cfg.probe.seeds}")
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
        try:
            spec = get_method(name, cfg.method_overrides.get(name))
        except ValueError as err:
            problems.append(f"config.method_overrides.{name}: {err}")
            continue
        spec_problems = method_problems(spec, f"method {name}")
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
            problems.append(f"config.{cfg.engine}: {err}")
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
