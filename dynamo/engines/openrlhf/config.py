"""Settings of the `openrlhf` engine: the `openrlhf:` section of an experiment YAML, typed and validated.

`ExperimentConfig.openrlhf` is a free mapping; `OpenRLHFConfig.from_dict(cfg.openrlhf)` checks its
names, types and bounds (pydantic, `dynamo.schema`: unknown keys fail with the list of known ones)
and the cross-field constraints OpenRLHF would otherwise only discover on the cluster (GPU layout),
every problem at once.

Everything that describes the *method* or the *experiment* (batch sizes, lr, clip, n) comes from
the method spec and `ExperimentConfig.train`; this section only holds how the run is laid out on
GPUs and OpenRLHF-specific knobs. `DynamoOptions` is what the entry point hands to the Ray actors
(through one environment variable of the job's runtime_env): where the resolved method spec is, and
the run's own switches.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import with_config

from dynamo.engines.openrlhf.spec_file import read_spec
from dynamo.methods import MethodSpec
from dynamo.schema import FIELDS, ConfigError, checked_build
from dynamo.schema import documented as _f

OPTIONS_ENV = "DYNAMO_OPENRLHF_OPTIONS"
# openrlhf.ray_address value: start Ray over the train job's Slurm allocation (multinode.py).
SLURM_RAY = "slurm"


@with_config(FIELDS)
@dataclass(frozen=True)
class OpenRLHFConfig:
    actor_num_nodes: int = _f(1, "Nodes for the policy (DeepSpeed) actors.", ge=1)
    actor_gpus_per_node: int = _f(8, "GPUs per node for the policy actors.", ge=1)
    vllm_num_engines: int = _f(
        8, "vLLM engines for rollouts (with colocate_all: x tensor_parallel = actor GPUs).", ge=1
    )
    vllm_tensor_parallel_size: int = _f(1, "Tensor-parallel size of each vLLM engine.", ge=1)
    vllm_gpu_memory_utilization: float = _f(
        0.6, "Fraction of GPU memory vLLM may take (colocated: leave room).", gt=0, le=1
    )
    colocate_all: bool = _f(True, "Actor and vLLM share the GPUs and sleep in turn (one node of 8 GPUs suffices).")
    enable_prefix_caching: bool = _f(True, "vLLM prefix caching: the n_i samples of a prompt share its prefix.")
    zero_stage: Literal[1, 2, 3] = _f(2, "DeepSpeed ZeRO stage (3 for models that do not fit with 2).")
    param_dtype: Literal["bf16", "fp16"] = _f("bf16", "Training dtype of the policy weights.")
    attn_implementation: str = _f("flash_attention_2", "transformers attn_implementation of the policy.")
    packing_samples: bool = _f(True, "Pack sequences without padding (flash-attn; --ds.packing_samples).")
    gradient_checkpointing: bool = _f(True, "Activation checkpointing in the policy (memory for time).")
    micro_train_batch_size: int = _f(4, "Sequences per GPU per forward/backward (memory only).", ge=1)
    micro_rollout_batch_size: int = _f(16, "Sequences per GPU per log-prob forward when making experience.", ge=1)
    dynamic_batch: bool = _f(
        False,
        "Token-budgeted micro-batches (--train.dynamic_batch_enable), as the DynaMO authors ran; the "
        "micro_*_batch_size fields are then unused. `dynamo plan` picks the budget.",
    )
    max_tokens_per_gpu: int = _f(4096, "With dynamic_batch: tokens per training micro-batch per GPU.", ge=1)
    shuffle_mini_batches: bool = _f(
        False,
        "With dynamic_batch: shuffle each GPU's share of the rollouts before it is cut into optimizer-step "
        "mini-batches and token-balanced micro-batches (seeded; stock OpenRLHF shuffles only fixed "
        "micro-batches). Default off: mini-batches are consecutive slices of the rollout order, as in stock "
        "OpenRLHF dynamic batching and the DynaMO authors' released code (which does not shuffle either).",
    )
    rollout_max_tokens_per_gpu: int = _f(
        0, "With dynamic_batch: tokens per log-prob micro-batch (0 = as training).", ge=0
    )
    prompt_max_len: int = _f(1024, "Longest prompt in tokens; data.max_len = this + train.max_new_tokens.", ge=1)
    adam_betas: list[float] = _f(
        [0.9, 0.999], "AdamW betas (verl/DynaMO default; OpenRLHF's own is 0.9 0.95).", min_length=2, max_length=2
    )
    input_key: str = _f("problem", "Field of a prompt-pool record holding the problem text.")
    label_key: str = _f("answer", "Field holding the gold answer (a string, or a list whose first item is used).")
    max_ckpt_num: int = _f(
        2,
        "DeepSpeed checkpoints kept in <run>/ckpt (resume uses the newest; `dynamo plan` prints the disk). "
        "1 halves the disk, but OpenRLHF deletes the old one before writing the next: a job killed during "
        "that write has nothing to resume from (the resume check refuses and names what to delete).",
        ge=1,
    )
    delete_checkpoints_after_eval: bool = _f(
        False,
        "Pipeline: delete a run's <run>/ckpt (weights + optimizer states) once its final weights are saved "
        "and evaluated on every benchmark (rule prune_checkpoints; a marker file records it).",
    )
    ray_address: str = _f(
        "",
        "Ray cluster of the run. Empty: a private one on this node (single node only). 'host:port': join "
        "that existing cluster. 'slurm': start Ray over the train job's own allocation (multinode.py; not "
        "yet run on a real multi-node allocation). A multi-node layout must name one of the last two.",
    )
    srun_args: list[str] = _f(
        [], "Multi-node: extra srun flags for the Ray worker step (e.g. ['--gres=gpu:8'] where steps need them)."
    )
    keep_tail_step: bool = _f(
        False, "Train on the short last step of each epoch (stock OpenRLHF); default: drop it (< N prompts)."
    )
    extra_args: list[str] = _f([], "Extra OpenRLHF flags appended verbatim; one that DynaMO sets is rejected.")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> OpenRLHFConfig:
        """The section, validated: fields (names, types, bounds) and layout, every problem at once."""
        cfg, problems = checked_build(cls, data or {}, "openrlhf")
        if cfg is not None and not problems:
            problems = cfg.layout_problems()
        if problems:
            raise ConfigError(problems)
        return cfg

    def layout_problems(self) -> list[str]:
        """The checks across fields: a layout OpenRLHF would only refuse on the cluster."""
        problems = []
        if self.actor_num_nodes > 1 and not self.ray_address:
            problems.append(
                f"openrlhf.actor_num_nodes = {self.actor_num_nodes} needs openrlhf.ray_address: 'host:port' of a "
                "running Ray cluster spanning the nodes, or 'slurm' to start one over the train job's Slurm "
                "allocation (untested on real multi-node hardware, docs/OPENRLHF_ENGINE.md)"
            )
        if self.shuffle_mini_batches and not self.dynamic_batch:
            problems.append(
                "openrlhf.shuffle_mini_batches applies to dynamic_batch: true only (fixed micro-batches are "
                "already shuffled by OpenRLHF)"
            )
        if self.colocate_all and self.vllm_num_engines * self.vllm_tensor_parallel_size != self.actor_gpus:
            problems.append(
                f"openrlhf.colocate_all needs vllm_num_engines * vllm_tensor_parallel_size "
                f"({self.vllm_num_engines} * {self.vllm_tensor_parallel_size}) == actor GPUs ({self.actor_gpus})"
            )
        return problems

    @property
    def actor_gpus(self) -> int:
        return self.actor_num_nodes * self.actor_gpus_per_node


@dataclass(frozen=True)
class DynamoOptions:
    """What every patched Ray actor needs besides OpenRLHF's own args (JSON in OPTIONS_ENV)."""

    spec_file: str = _f("", "Absolute path of the resolved method spec the launcher wrote (spec_file.py).")
    spec_sha256: str = _f("", "sha256 of that spec's canonical JSON: every reader checks it.")
    max_steps: int = _f(0, "Stop after this many RL steps (train.steps); 0 = run OpenRLHF's episodes out.")
    run_dir: str = _f("", "Absolute run directory: metrics.jsonl and prompt_stats.json are written there.")
    keep_tail: bool = _f(False, "Keep the short last step of an epoch (fewer than N prompts left).")
    shuffle_mini_batches: bool = _f(False, "openrlhf.shuffle_mini_batches (dynamic batching only).")

    def method_spec(self) -> MethodSpec:
        """The resolved spec, read from the launcher's file and checked against its digest."""
        return read_spec(self.spec_file, self.spec_sha256)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls) -> DynamoOptions:
        raw = os.environ.get(OPTIONS_ENV)
        if not raw:
            raise RuntimeError(
                f"{OPTIONS_ENV} is not set in this Ray worker: start training through "
                "`python -m dynamo.engines.openrlhf.entry`, which passes it in the job's runtime_env"
            )
        return cls(**json.loads(raw))
