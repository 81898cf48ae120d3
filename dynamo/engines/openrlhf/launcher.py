"""Experiment config + method spec -> the OpenRLHF command line (plus DynaMO's own options), and its launch.

    dynamo train --engine openrlhf --config config/config.yaml config/experiments/qwen2.5-math-7b.yaml \\
        --method dynamo --seed 1 --out runs/qwen2.5-math-7b/dynamo/seed1 --dry-run

The method spec is resolved here, once, and travels whole: `launch` writes it to the run directory
(spec_file.py) and the command names that file and its digest; the controller and every policy
rank read it and pass it (or its sections) to the same core functions as the local engine. So no
spec setting needs an OpenRLHF flag of its own. The flags below are the ones OpenRLHF's own code
paths need, derived from the spec in this one place (see docs/OPENRLHF_ENGINE.md for the table):

- batch: N prompts x n -> --rollout.batch_size N --rollout.n_samples_per_prompt n; the optimizer
  mini-batch --train.batch_size = mini_batch_prompts * m samples, m = rule.trained_per_prompt(n)
  the samples per prompt a step trains on (n; PODS: its kept m), so a step has N / mini_batch_prompts
  updates per epoch under any allocation, as in the local engine; --train.max_epochs = ppo_epochs.
- loss.kl_coef > 0: --algo.kl.init_coef c --algo.kl.use_loss --algo.kl.estimator k3 (OpenRLHF then
  builds the reference model whose log-probs the core's k3 term reads), else --algo.kl.init_coef 0
  (no reference model).
- group_filter dynamic_sampling: --algo.dynamic_filtering_enable --algo.dynamic_filtering_range 0 1
  (the stock generator passes the switch to the patched one; refills capped there at max_refill_rounds).
- --algo.advantage.estimator group_norm for every estimator: it only picks the stock return path
  (reward at the last token, gamma 1, no whitening) around the block the patched experience maker
  replaces with the core's advantages. Checked in 0.11.2's source: the flag is read only inside the
  `compute_advantages_and_returns` the patch overrides whole, and by the CLI, which then builds no
  critic and asks n > 1, as for any estimator but gae.
- lr schedule: constant after a linear warm-up of train.warmup_steps *RL steps* (verl steps its
  scheduler once per RL step; OpenRLHF once per optimizer step, so the ratio is converted).
Flags whose meaning the spec owns (clip range, dual clip, aggregation, entropy bonus, overlong
shaping, ...) are not set, and `openrlhf.extra_args` may not set them (`SPEC_OWNED_FLAGS`): the
patched code would ignore them. `check_supported` refuses, by name, a spec the engine cannot run.

This module imports neither OpenRLHF nor Ray, so a dry run works on any machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynamo.core.mechanisms import spec_sections
from dynamo.core.rules import make_rule
from dynamo.engines.openrlhf import OPENRLHF_VERSION
from dynamo.engines.openrlhf.config import SLURM_RAY, OpenRLHFConfig
from dynamo.engines.openrlhf.spec_file import SPEC_FILE, spec_digest, write_spec
from dynamo.spec import MethodSpec

if TYPE_CHECKING:  # annotations only: dynamo.config imports this module to validate a config
    from dynamo.config import ExperimentConfig

REWARD_FILE = Path(__file__).resolve().with_name("reward_func.py")
PROMPTS_FILE = "openrlhf/prompts.jsonl"  # inside the run directory, written by `launch`
STOCK_ESTIMATOR = "group_norm"  # the stock return path around the patched advantage block (any estimator)
EPISODES = 1000  # OpenRLHF loops episodes over the prompt set; the patch stops at train.steps
# OpenRLHF flags for settings the method spec owns: the patched code reads the spec, never these.
SPEC_OWNED_FLAGS = (
    "--actor.eps_clip",
    "--actor.eps_clip_low_high",
    "--actor.dual_clip",
    "--actor.loss_agg_mode",
    "--actor.entropy_coef",
    "--actor.policy_loss_type",
    "--algo.advantage.estimator",
    "--algo.kl.init_coef",
    "--algo.kl.use_loss",
    "--algo.kl.estimator",
    "--algo.dynamic_filtering_enable",
    "--algo.dynamic_filtering_range",
    "--reward.overlong_buffer_len",
    "--reward.overlong_penalty_factor",
)


# MethodSpec sections outside the token objective that this engine's patches carry out, each through
# the core function the local engine calls too. The objective's sections are what the core's
# mechanisms declare (`dynamo.core.mechanisms.spec_sections`).
ENGINE_SECTIONS = {
    "allocation": "rollout.py/trainer.py: the registered rule, dynamo.core.rules",
    "advantage": "experience.py: the rule's advantages (dynamo.core.rules; core sequence_advantages)",
    "group_filter": "rollout.py: DAPO's filter (dynamo.core.shaping.groups_with_spread), capped refills",
    "reward_shaping": "experience.py: dynamo.core.shaping.overlong_penalty",
}


def carried_sections() -> frozenset[str]:
    """The MethodSpec fields this engine carries out: the core objective's, plus ENGINE_SECTIONS."""
    return spec_sections() | set(ENGINE_SECTIONS) | {"name", "description"}


def check_supported(spec: MethodSpec) -> None:
    """Raise ValueError naming every spec setting the OpenRLHF engine cannot run.

    The spec travels whole (spec_file.py) into the same core functions as the local engine's; a
    section nothing here carries out (no core mechanism declares it, not in ENGINE_SECTIONS) is
    refused when set, and what the patched generator cannot do is a capability of the allocation
    rule (counts that vary, down-selection, sampling in rounds), refused here only where it meets
    DAPO's refills. (tests/test_openrlhf_launcher.py checks from the source that the settings the local engine
    reads in its own code are read here too.)"""
    default = MethodSpec(name=spec.name)
    carried = carried_sections()
    unsupported = [
        f"{f.name}={getattr(spec, f.name)!r} (no core mechanism declares it and no patch here reads it)"
        for f in dataclasses.fields(MethodSpec)
        if f.name not in carried and getattr(spec, f.name) != getattr(default, f.name)
    ]
    rule = make_rule(spec.allocation)
    if rule.varies_counts and spec.group_filter.kind == "dynamic_sampling":
        unsupported.append(
            f"allocation.kind={rule.name!r} with group_filter.kind='dynamic_sampling' (refilled prompts would "
            "get the default n, so the budget sum n_i = B could not be kept)"
        )
    if (rule.selects or rule.sequential) and spec.group_filter.kind == "dynamic_sampling":
        unsupported.append(
            f"allocation.kind={rule.name!r} with group_filter.kind='dynamic_sampling' (the generator does not "
            "combine a post-rollout down-selection or sampling in rounds with DAPO's refills)"
        )
    if unsupported:
        raise ValueError(f"method {spec.name!r}: the openrlhf engine cannot express: {'; '.join(unsupported)}")


def updates_per_step(rule, num_prompts: int, n: int, train_batch: int) -> int:
    """Optimizer updates per epoch of one RL step: N * rule.trained_per_prompt(n) trained samples (PODS:
    m of each group's n) in mini-batches of `train_batch` samples. The launcher's warm-up and the
    controller's scheduler length (trainer.py) both count with it."""
    return num_prompts * rule.trained_per_prompt(n) // train_batch


def _num(x: float) -> str:
    """A float as a short exact flag value (1e-06, 0.2, 10)."""
    return repr(int(x)) if float(x).is_integer() and abs(x) >= 1 else repr(float(x))


def batch_layout(spec, o: OpenRLHFConfig, max_new_tokens: int) -> tuple[bool, int, int]:
    """(dynamic batching?, train and rollout micro-batch sequences) for one method.

    A method that needs the optimiser step's micro-batches together (Fork Tokens, mini_batch
    window statistics) cannot run under OpenRLHF's token-budgeted batching, which regroups them;
    with `dynamic_batch` on it gets fixed micro-batches of as many whole sequences as the token
    budget holds (at least one), so its memory stays within the same budget."""
    from dynamo.engines.common import needs_step_micro_batches

    if not o.dynamic_batch:
        return False, o.micro_train_batch_size, o.micro_rollout_batch_size
    if not needs_step_micro_batches(spec):
        return True, o.micro_train_batch_size, o.micro_rollout_batch_size
    seq_len = o.prompt_max_len + max_new_tokens
    train = max(1, o.max_tokens_per_gpu // seq_len)
    rollout = max(1, (o.rollout_max_tokens_per_gpu or o.max_tokens_per_gpu) // seq_len)
    return False, train, rollout


def build_command(
    cfg: ExperimentConfig, method: str | MethodSpec, seed: int, run_dir: str, base_model: str | None = None
) -> list[str]:
    """The full command line (python -m dynamo.engines.openrlhf.entry ...) for one (method, seed) run.

    `method`: a registered name (resolved with the experiment's overrides) or the resolved spec."""
    spec = cfg.method(method) if isinstance(method, str) else method
    check_supported(spec)
    o = OpenRLHFConfig.from_dict(cfg.openrlhf)
    t = cfg.train
    run = Path(run_dir).resolve()  # Ray workers do not share the driver's working directory
    model = base_model or cfg.base_model_path
    if os.path.exists(model):
        model = str(Path(model).resolve())
    # a method with allocation.budget_scale (grpo-1.5x) samples n * budget_scale per prompt
    n, prompts = spec.allocation.per_prompt(t.rollouts_per_prompt), t.prompts_per_step
    rule = make_rule(spec.allocation)
    trained = rule.trained_per_prompt(n)  # samples per prompt a step trains on (PODS: m < n)
    train_batch = t.mini_batch_prompts * trained
    world = o.actor_gpus
    dynamic, micro_train, micro_rollout = batch_layout(spec, o, t.max_new_tokens)
    if not dynamic and train_batch % (micro_train * world):
        raise ValueError(
            f"train.mini_batch_prompts * {trained} trained per prompt = {train_batch} samples must split into "
            f"micro-batches of {micro_train} sequences (openrlhf.micro_train_batch_size) on {world} GPUs"
        )
    if (prompts * trained) % train_batch:
        raise ValueError(
            f"a step's {prompts * trained} trained samples (N * {trained}) are not a whole number of "
            f"mini-batches of {train_batch}"
        )
    rule.check_feasible(prompts, n)

    updates = updates_per_step(rule, prompts, n, train_batch) * t.ppo_epochs  # optimizer steps per RL step
    total_updates = t.steps * updates
    # OpenRLHF warms up ceil(total * ratio) optimizer steps; aim half a step low so rounding lands exactly.
    warmup_ratio = (t.warmup_steps * updates - 0.5) / total_updates if t.warmup_steps else 0.0

    cmd = [sys.executable, "-m", "dynamo.engines.openrlhf.entry"]
    cmd += ["--dynamo.spec", str(run / SPEC_FILE), "--dynamo.spec_sha256", spec_digest(spec)]
    cmd += ["--dynamo.max_steps", str(t.steps), "--dynamo.run_dir", str(run)]
    if o.ray_address and o.ray_address != SLURM_RAY:  # 'slurm': _run_training adds the address it starts
        cmd += ["--dynamo.ray_address", o.ray_address]
    if o.keep_tail_step:
        cmd += ["--dynamo.keep_tail", "1"]
    if o.shuffle_mini_batches:
        cmd += ["--dynamo.shuffle_mini_batches", "1"]

    cmd += [
        # model, data and reward
        "--actor.model_name_or_path",
        model,
        "--data.prompt_dataset",
        str(run / PROMPTS_FILE),
        "--data.input_key",
        "prompt",
        "--data.label_key",
        "label",
        *(["--data.apply_chat_template"] if cfg.data.use_chat_template else []),
        "--data.max_len",
        str(o.prompt_max_len + t.max_new_tokens),
        "--rollout.max_new_tokens",
        str(t.max_new_tokens),
        "--reward.remote_url",
        str(REWARD_FILE),
        # batch and schedule
        "--rollout.batch_size",
        str(prompts),
        "--rollout.n_samples_per_prompt",
        str(n),
        "--train.batch_size",
        str(train_batch),
        "--train.max_epochs",
        str(t.ppo_epochs),
        "--train.num_episodes",
        str(EPISODES),
        "--rollout.micro_batch_size",
        str(micro_rollout),
        "--train.micro_batch_size",
        str(micro_train),
        "--rollout.temperature",
        _num(t.temperature),
        "--rollout.top_p",
        _num(t.top_p),
        # optimizer
        "--actor.adam.lr",
        _num(t.lr),
        "--actor.adam.weight_decay",
        _num(t.weight_decay),
        "--actor.adam.betas",
        *(_num(b) for b in o.adam_betas),
        "--actor.max_norm",
        _num(t.grad_clip),
        "--actor.lr_scheduler",
        "constant_with_warmup",
        "--actor.lr_warmup_ratio",
        repr(warmup_ratio),
        # algorithm
        "--algo.advantage.estimator",
        STOCK_ESTIMATOR,
    ]
    if spec.loss.kl_coef:
        cmd += ["--algo.kl.init_coef", _num(spec.loss.kl_coef), "--algo.kl.use_loss", "--algo.kl.estimator", "k3"]
    else:
        cmd += ["--algo.kl.init_coef", "0"]
    if spec.group_filter.kind == "dynamic_sampling":
        cmd += ["--algo.dynamic_filtering_enable", "--algo.dynamic_filtering_range", "0", "1"]
    cmd += [
        # GPU layout
        "--actor.num_nodes",
        str(o.actor_num_nodes),
        "--actor.num_gpus_per_node",
        str(o.actor_gpus_per_node),
        "--vllm.num_engines",
        str(o.vllm_num_engines),
        "--vllm.tensor_parallel_size",
        str(o.vllm_tensor_parallel_size),
        "--vllm.gpu_memory_utilization",
        _num(o.vllm_gpu_memory_utilization),
        *(["--train.colocate_all", "--vllm.enable_sleep", "--ds.enable_sleep"] if o.colocate_all else []),
        *(["--vllm.enable_prefix_caching"] if o.enable_prefix_caching else []),
        "--ds.zero_stage",
        str(o.zero_stage),
        "--ds.param_dtype",
        o.param_dtype,
        "--ds.attn_implementation",
        o.attn_implementation,
        *(["--ds.packing_samples"] if o.packing_samples else []),
        *(
            [
                "--train.dynamic_batch_enable",
                "--train.max_tokens_per_gpu",
                str(o.max_tokens_per_gpu),
                "--rollout.max_tokens_per_gpu",
                str(o.rollout_max_tokens_per_gpu or o.max_tokens_per_gpu),
            ]
            if dynamic
            else []
        ),
        *(["--actor.gradient_checkpointing_enable"] if o.gradient_checkpointing else []),
        # bookkeeping
        "--train.seed",
        str(seed),
        "--ckpt.path",
        str(run / "ckpt"),
        "--ckpt.save_steps",
        str(t.checkpoint_every),
        "--ckpt.max_num",
        str(o.max_ckpt_num),
        "--ckpt.load_enable",
        "--ckpt.output_dir",
        str(run / "final"),
        "--logger.tensorboard_dir",
        str(run / "tensorboard"),
        "--logger.logging_steps",
        "1",
        "--eval.steps",
        "-1",
    ]
    cmd += wandb_flags(cfg, spec.name, seed)
    _check_extra_args(o.extra_args, cmd)
    return cmd + list(o.extra_args)


# OpenRLHF logs to W&B iff --logger.wandb.key is set, and calls wandb.login(key) only when no key
# is configured already (WANDB_API_KEY or `wandb login`). The real key never goes on the command
# line (it is printed and saved in summary.json): this placeholder only switches the logger on.
WANDB_KEY_PLACEHOLDER = "from-environment"


def wandb_flags(cfg: ExperimentConfig, method_name: str, seed: int) -> list[str]:
    """OpenRLHF's own W&B flags for config `logger.wandb` (nothing when it is off)."""
    w = cfg.logger.wandb
    if not w.enabled:
        return []
    flags = ["--logger.wandb.key", WANDB_KEY_PLACEHOLDER, "--logger.wandb.project", w.project]
    flags += ["--logger.wandb.group", cfg.experiment, "--logger.wandb.run_name", f"{method_name}-seed{seed}"]
    return flags + (["--logger.wandb.org", w.entity] if w.entity else [])


def wandb_env(cfg: ExperimentConfig, run: Path) -> dict[str, str]:
    """W&B mode and directory for the OpenRLHF process; the entry forwards WANDB_* to the Ray workers."""
    w = cfg.logger.wandb
    return {"WANDB_MODE": w.mode, "WANDB_DIR": str(run)} if w.enabled else {}


def _check_wandb(cfg: ExperimentConfig) -> None:
    """Before the cluster starts: wandb importable, and a key configured when logging online."""
    from dynamo.tracking import require_wandb

    w = cfg.logger.wandb
    require_wandb(w)
    if w.enabled and w.mode == "online":
        import wandb

        if not wandb.api.api_key:
            raise SystemExit(
                "logger.wandb.mode is online but no W&B API key is configured: set WANDB_API_KEY or run "
                "`wandb login` (or use logger.wandb.mode: offline)"
            )


def validate(cfg: ExperimentConfig) -> None:
    """Fail now, not on the cluster: the openrlhf section and every method of the experiment must map."""
    tables_1_2 = sorted({*cfg.methods, *cfg.ablation_methods})
    for name in tables_1_2:
        build_command(cfg, name, cfg.seeds[0], cfg.run_dir(name, cfg.seeds[0]))
    # table 4's methods are checked too, naming the list on failure (a method may be listed there only)
    for name in sorted(set(cfg.allocation_methods) - set(tables_1_2)):
        try:
            build_command(cfg, name, cfg.seeds[0], cfg.run_dir(name, cfg.seeds[0]))
        except ValueError as err:
            raise ValueError(f"{err} (listed in allocation_methods: leave it out for this engine)") from err


def _check_extra_args(extra: list[str], cmd: list[str]) -> None:
    ours = {a for a in cmd if a.startswith("--")} | set(SPEC_OWNED_FLAGS)
    clash = sorted({a for a in extra if a.startswith("--") and a.split("=")[0] in ours})
    if clash or "--train.async_enable" in extra:
        raise ValueError(
            f"openrlhf.extra_args may not repeat flags the engine sets, set what the method spec owns "
            f"(change the method instead) or enable async mode: {clash or ['--train.async_enable']}"
        )


def write_prompts(cfg: ExperimentConfig, path: Path) -> int:
    """The prompt pool as OpenRLHF reads it: {"prompt": template applied, "label": gold answer} per line."""
    o = OpenRLHFConfig.from_dict(cfg.openrlhf)
    source = cfg.train_pool_path
    if os.path.exists(source):
        suffix = Path(source).suffix.lstrip(".")
        from datasets import load_dataset

        rows = load_dataset({"jsonl": "json"}.get(suffix, suffix), data_files=source, split="train")
    else:
        from datasets import load_dataset

        rows = load_dataset(source, split="train")  # a hub id
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path.with_suffix(".tmp"), "w") as fh:
        for row in rows:
            gold = row[o.label_key]
            gold = gold[0] if isinstance(gold, list) else gold
            text = cfg.data.template.replace("{problem}", str(row[o.input_key]))
            fh.write(json.dumps({"prompt": text, "label": str(gold)}) + "\n")
            count += 1
    os.replace(path.with_suffix(".tmp"), path)
    return count


def _run_training(cmd: list[str], o: OpenRLHFConfig, env: dict[str, str] | None = None) -> int:
    """Run the entry point; for a multi-node layout, inside a Ray cluster over the Slurm allocation."""
    if o.ray_address != SLURM_RAY:
        return subprocess.call(cmd, env=env)
    from dynamo.engines.openrlhf import multinode

    nodes = multinode.allocation_nodes()
    if len(nodes) < o.actor_num_nodes:
        raise RuntimeError(
            f"openrlhf.actor_num_nodes = {o.actor_num_nodes} needs a Slurm allocation of that many nodes "
            f"(this job has {len(nodes) or 'no Slurm allocation'}; the train rule asks Slurm for them), or "
            "openrlhf.ray_address = 'host:port' of an existing Ray cluster"
        )
    with multinode.ray_cluster(
        nodes[: o.actor_num_nodes], o.actor_gpus_per_node, srun_args=o.srun_args
    ) as address:
        return subprocess.call([*cmd, "--dynamo.ray_address", address], env=env)  # entry strips it anywhere


def launch(
    cfg: ExperimentConfig, method_name: str, seed: int, run_dir: str, dry_run: bool, base_model: str | None = None
) -> int:
    """Print the command (dry run), or write the method spec and prompt files, run OpenRLHF and write
    summary.json."""
    spec = cfg.method(method_name)  # resolved once: everything below and the whole OpenRLHF side use it
    cmd = build_command(cfg, spec, seed, run_dir, base_model)
    run = Path(run_dir).resolve()
    env = wandb_env(cfg, run)
    print("".join(f"{k}={shlex.quote(v)} " for k, v in env.items()) + shlex.join(cmd), flush=True)
    if dry_run:
        return 0
    _check_wandb(cfg)
    write_spec(run / SPEC_FILE, spec)
    num_prompts = write_prompts(cfg, run / PROMPTS_FILE)
    started = time.time()
    rc = _run_training(cmd, OpenRLHFConfig.from_dict(cfg.openrlhf), env={**os.environ, **env})
    if rc == 0:
        write_summary(cfg, spec, seed, cmd, run, num_prompts, seconds_total=time.time() - started)
    return rc


def run_gpus(o: OpenRLHFConfig) -> int:
    """GPUs a run holds: the actors' (vLLM shares them when colocated), else actors' plus vLLM's."""
    vllm = o.vllm_num_engines * o.vllm_tensor_parallel_size
    return o.actor_gpus if o.colocate_all else o.actor_gpus + vllm


def write_summary(
    cfg: ExperimentConfig,
    spec: MethodSpec,
    seed: int,
    cmd: list[str],
    run: Path,
    num_prompts: int,
    *,
    seconds_total: float,
) -> dict[str, Any]:
    """summary.json of a finished run: provenance and the run's cost (dynamo.metrics_names)."""
    from dynamo import metrics_names as M
    from dynamo.io import read_jsonl, write_json_atomic
    from dynamo.provenance_info import git_commit

    rows = read_jsonl(run / "metrics.jsonl") if (run / "metrics.jsonl").exists() else []
    gpus = run_gpus(OpenRLHFConfig.from_dict(cfg.openrlhf))
    summary = {
        "method": spec.to_dict(),
        "method_sha256": spec_digest(spec),  # of the spec file every rank read (spec_file.py)
        "seed": seed,
        "engine": "openrlhf",
        "openrlhf_version": OPENRLHF_VERSION,
        "base_model": cmd[cmd.index("--actor.model_name_or_path") + 1],
        "prompt_pool_size": num_prompts,
        "config": dataclasses.asdict(cfg),
        "command": cmd,
        "git_commit": git_commit(),
        "seconds_total": seconds_total,
        M.SUMMARY_WINDOW: spec.window,
        M.SUMMARY_COST: M.run_cost(rows, seconds_total=seconds_total, gpus=gpus),
    }
    write_json_atomic(run / "summary.json", summary)
    return summary
