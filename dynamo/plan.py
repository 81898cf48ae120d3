"""`dynamo plan`: per-GPU memory of an openrlhf run, phase by phase, and micro-batch sizes that fit.

    dynamo plan --config config/config.yaml config/experiments/qwen2.5-math-7b.yaml --gpu-memory 80

Three phases share each GPU (colocated actor + vLLM, both sleeping in turn):

- generation: vLLM takes `vllm_gpu_memory_utilization` of the card (weights + KV cache); the
  DeepSpeed actor is put to sleep (`--ds.enable_sleep`), which moves its gradients and optimizer
  states to the host but, under ZeRO < 3, not its bf16 weights: they stay resident beside vLLM
  (7B: 14.2 GiB on every GPU). Under ZeRO-3 the weight shards go to the host too.
- log-prob pass (making experience): actor weights, gradient and optimizer shards resident, plus
  the logits of one rollout micro-batch: bf16 logits, their fp32 copy and the fp32 log-softmax
  (10 bytes per token per vocabulary entry -- the term that dominates at a 152k vocabulary).
- training: the same states, activations under checkpointing (each layer's bf16 input kept, one
  layer recomputed at a time) and the logits of one training micro-batch with their gradient.

Exactly countable (unit-tested on tiny models): parameters of a Qwen2-architecture model from its
config; bf16 weights 2 bytes/param; fp32 gradients 4 bytes/param (divided over the data-parallel
group from ZeRO stage 2); AdamW states 12 bytes/param (fp32 master copy, exp_avg, exp_avg_sq;
divided from ZeRO stage 1). The activation and logits terms are estimates of the dominant
buffers; allocator fragmentation and NCCL buffers are covered by a fixed 3 GiB overhead. Nothing
here has been checked against a GPU yet (benchmarks/gpu_check.py measures the log-prob pass).

Disk: one DeepSpeed checkpoint holds the bf16 module weights (2 bytes/param) and, sharded over the
ranks but summing to the whole model, the fp32 master copy and AdamW's two moments (12 bytes/param):
14 bytes/param whatever the ZeRO stage (7B: ~107 GB). A run keeps `openrlhf.max_ckpt_num` of them
(OpenRLHF deletes the oldest before writing the next, so that is also the peak) plus its final bf16
weights (2 bytes/param); the sweep is that times the (method, seed) runs the pipeline trains.

Tokens per micro-batch: with dynamic batching (`openrlhf.dynamic_batch`, OpenRLHF's
`--train.dynamic_batch_enable` + `--{train,rollout}.max_tokens_per_gpu`), micro-batches are
packed up to a token budget, as the DynaMO authors ran (4096 tokens per GPU); otherwise
`micro_*_batch_size` sequences of up to `data.max_len` tokens each. `pick` returns the largest
token budget (and the fixed sizes that match it) whose phases fit in the given GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dynamo.config import ExperimentConfig

GIB = 2**30
OVERHEAD_GIB = 3.0  # CUDA context, allocator fragmentation, NCCL buffers
LOGIT_BYTES_NO_GRAD = 2 + 4 + 4  # bf16 logits, fp32 upcast, fp32 log-softmax
LOGIT_BYTES_GRAD = LOGIT_BYTES_NO_GRAD + 4  # + fp32 gradient of the logits
BUDGETS = (32768, 24576, 16384, 12288, 8192, 6144, 4096)
AUTHORS_TOKENS = 4096  # the DynaMO authors' log-prob / training token budget per GPU (dynamic batching)
HEADROOM = 0.9  # pick() keeps 10% of the card free: the activation and logits terms are estimates
CKPT_BYTES_PER_PARAM = 2 + 12  # bf16 module weights + fp32 master copy, exp_avg, exp_avg_sq
FINAL_BYTES_PER_PARAM = 2  # the run's final weights, saved in bf16


@dataclass(frozen=True)
class ModelShape:
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tied: bool

    @classmethod
    def from_hf_config(cls, c: dict) -> ModelShape:
        return cls(
            vocab=c["vocab_size"],
            hidden=c["hidden_size"],
            layers=c["num_hidden_layers"],
            heads=c["num_attention_heads"],
            kv_heads=c.get("num_key_value_heads", c["num_attention_heads"]),
            intermediate=c["intermediate_size"],
            tied=bool(c.get("tie_word_embeddings", False)),
        )

    def num_params(self) -> int:
        """Parameters of a Qwen2 causal LM: q/k/v projections with bias, o without, SwiGLU MLP, RMSNorms."""
        h, kv = self.hidden, self.hidden // self.heads * self.kv_heads
        attention = (h * h + h) + 2 * (h * kv + kv) + h * h
        layer = attention + 3 * h * self.intermediate + 2 * h
        embed = self.vocab * h
        return embed + self.layers * layer + h + (0 if self.tied else embed)


# Published config.json shapes; a local (or staged) config.json is read instead when present.
KNOWN_SHAPES = {
    "Qwen/Qwen2.5-Math-7B": ModelShape(152064, 3584, 28, 28, 4, 18944, False),
    "Qwen/Qwen2.5-Math-1.5B": ModelShape(151936, 1536, 28, 12, 2, 8960, True),
}


def model_shape(path: str) -> ModelShape:
    from dynamo.stage import plan_items

    candidates = [path]
    if "/" in path and not os.path.exists(path):
        candidates.append(plan_items(path, None, []).model[1])  # its staged copy
    for candidate in candidates:
        config = Path(candidate) / "config.json"
        if config.is_file():
            return ModelShape.from_hf_config(json.loads(config.read_text()))
    if path in KNOWN_SHAPES:
        return KNOWN_SHAPES[path]
    raise ValueError(f"no config.json for model {path!r} on disk (stage it first: `dynamo stage --model {path}`)")


# ---------------------------------------------------------------------------------------------
# The countable parts


def weight_bytes(params: int, zero_stage: int, world: int, bytes_per_param: int = 2) -> float:
    return params * bytes_per_param / (world if zero_stage >= 3 else 1)


def gradient_bytes(params: int, zero_stage: int, world: int, bytes_per_param: int = 4) -> float:
    return params * bytes_per_param / (world if zero_stage >= 2 else 1)


def optimizer_bytes(params: int, zero_stage: int, world: int) -> float:
    """AdamW with an fp32 master copy: 4 (master) + 4 (exp_avg) + 4 (exp_avg_sq) bytes per parameter."""
    return params * 12 / (world if zero_stage >= 1 else 1)


# ---------------------------------------------------------------------------------------------
# The estimated parts


def activation_bytes(shape: ModelShape, tokens: int, checkpointing: bool) -> float:
    """Training activations of one micro-batch (bf16): layer inputs kept + one layer's working set."""
    layer_work = tokens * (6 * shape.hidden + 3 * shape.intermediate) * 2  # qkv/o, MLP up/gate/act, norms
    if checkpointing:
        return shape.layers * tokens * shape.hidden * 2 + layer_work
    return shape.layers * layer_work


def logits_bytes(shape: ModelShape, tokens: int, grad: bool) -> float:
    return tokens * shape.vocab * (LOGIT_BYTES_GRAD if grad else LOGIT_BYTES_NO_GRAD)


@dataclass(frozen=True)
class Layout:
    gpu_gib: float
    world: int
    zero_stage: int
    checkpointing: bool
    vllm_fraction: float
    colocate: bool
    max_len: int
    train_tokens: int  # tokens per training micro-batch on one GPU
    rollout_tokens: int  # tokens per log-prob micro-batch on one GPU


@dataclass(frozen=True)
class Estimate:
    params: int
    phases: dict[str, dict[str, float]]  # phase -> component -> GiB

    @property
    def totals(self) -> dict[str, float]:
        return {phase: sum(parts.values()) for phase, parts in self.phases.items()}

    @property
    def peak_phase(self) -> str:
        return max(self.totals, key=self.totals.get)

    @property
    def peak_gib(self) -> float:
        return self.totals[self.peak_phase]


def estimate(shape: ModelShape, lay: Layout) -> Estimate:
    p = shape.num_params()
    states = {
        "weights (bf16)": weight_bytes(p, lay.zero_stage, lay.world) / GIB,
        "gradients (fp32 shard)": gradient_bytes(p, lay.zero_stage, lay.world) / GIB,
        "optimizer (AdamW shard)": optimizer_bytes(p, lay.zero_stage, lay.world) / GIB,
    }
    vllm_awake = lay.vllm_fraction * lay.gpu_gib
    # Asleep for generation, the actor keeps its bf16 weights on the GPU unless ZeRO-3 shards them away.
    sleeping_actor = states["weights (bf16)"] if lay.zero_stage < 3 else 0.5
    vllm_asleep = 1.0 if lay.colocate else vllm_awake  # sleeping vLLM keeps its context only
    no_grad_work = (
        activation_bytes(shape, lay.rollout_tokens, True) - shape.layers * lay.rollout_tokens * shape.hidden * 2
    )
    phases = {
        "generation": {
            "vLLM share": vllm_awake,
            "actor weights (asleep)" if lay.colocate else "actor states": sleeping_actor
            if lay.colocate
            else sum(states.values()),
            "overhead": OVERHEAD_GIB,
        },
        "log-prob pass": {
            **states,
            "logits (no grad)": logits_bytes(shape, lay.rollout_tokens, grad=False) / GIB,
            "activations (no grad)": no_grad_work / GIB,
            "vLLM (asleep)" if lay.colocate else "vLLM share": vllm_asleep,
            "overhead": OVERHEAD_GIB,
        },
        "training": {
            **states,
            "activations (checkpointed)" if lay.checkpointing else "activations": activation_bytes(
                shape, lay.train_tokens, lay.checkpointing
            )
            / GIB,
            "logits + grad": logits_bytes(shape, lay.train_tokens, grad=True) / GIB,
            "vLLM (asleep)" if lay.colocate else "vLLM share": vllm_asleep,
            "overhead": OVERHEAD_GIB,
        },
    }
    return Estimate(p, phases)


@dataclass(frozen=True)
class DiskPlan:
    per_checkpoint_gb: float
    kept: int  # checkpoints kept per run (openrlhf.max_ckpt_num)
    final_gb: float
    runs: int  # (method, seed) training runs of the sweep

    @property
    def per_run_gb(self) -> float:
        return self.kept * self.per_checkpoint_gb + self.final_gb

    @property
    def per_sweep_gb(self) -> float:
        return self.runs * self.per_run_gb


def disk_plan(cfg: ExperimentConfig) -> DiskPlan:
    """Checkpoint footprint of cfg (decimal GB, as `df -H` shows): 14 bytes/param per checkpoint."""
    from dynamo.engines.openrlhf.config import OpenRLHFConfig

    params = model_shape(cfg.model.path).num_params()
    runs = len({*cfg.methods, *cfg.ablation_methods}) * len(cfg.seeds)
    return DiskPlan(
        per_checkpoint_gb=params * CKPT_BYTES_PER_PARAM / 1e9,
        kept=OpenRLHFConfig.from_dict(cfg.openrlhf).max_ckpt_num,
        final_gb=params * FINAL_BYTES_PER_PARAM / 1e9,
        runs=runs,
    )


def render_disk(d: DiskPlan) -> str:
    return "\n".join(
        [
            "Disk (run directories; 14 bytes/param per checkpoint: bf16 weights + fp32 master + Adam moments):",
            f"  per checkpoint: {d.per_checkpoint_gb:.1f} GB",
            f"  per run:        {d.per_run_gb:.1f} GB ({d.kept} checkpoint(s) kept, openrlhf.max_ckpt_num, "
            f"+ {d.final_gb:.1f} GB final weights)",
            f"  per sweep:      {d.per_sweep_gb / 1000:.2f} TB ({d.runs} training runs)",
        ]
    )


def layout_of(cfg: ExperimentConfig, gpu_gib: float) -> Layout:
    from dynamo.engines.openrlhf.config import OpenRLHFConfig

    o = OpenRLHFConfig.from_dict(cfg.openrlhf)
    max_len = o.prompt_max_len + cfg.train.max_new_tokens
    if o.dynamic_batch:
        train_tokens, rollout_tokens = o.max_tokens_per_gpu, o.rollout_max_tokens_per_gpu or o.max_tokens_per_gpu
    else:
        train_tokens, rollout_tokens = o.micro_train_batch_size * max_len, o.micro_rollout_batch_size * max_len
    return Layout(
        gpu_gib=gpu_gib,
        world=o.actor_gpus,
        zero_stage=o.zero_stage,
        checkpointing=o.gradient_checkpointing,
        vllm_fraction=o.vllm_gpu_memory_utilization,
        colocate=o.colocate_all,
        max_len=max_len,
        train_tokens=train_tokens,
        rollout_tokens=rollout_tokens,
    )


def memory_plan(cfg: ExperimentConfig, gpu_gib: float = 80.0) -> Estimate:
    """The estimate for cfg's own settings."""
    return estimate(model_shape(cfg.model.path), layout_of(cfg, gpu_gib))


def pick(
    shape: ModelShape, lay: Layout, cap: int = AUTHORS_TOKENS, headroom: float = HEADROOM
) -> tuple[int, Estimate] | None:
    """The largest token budget <= cap (and >= one full sequence) whose peak stays within headroom x
    the GPU's memory; None if none does. The cap defaults to the authors' 4096 tokens per GPU, so that
    DynaMO's micro-batch statistics are taken over sets of the same size as theirs."""
    from dataclasses import replace

    for budget in sorted({*BUDGETS, cap}, reverse=True):
        if budget > cap or budget < lay.max_len:
            continue
        est = estimate(shape, replace(lay, train_tokens=budget, rollout_tokens=budget))
        if est.peak_gib <= headroom * lay.gpu_gib:
            return budget, est
    return None


def render(est: Estimate, title: str) -> str:
    lines = [title, f"  parameters: {est.params / 1e9:.3f} B"]
    for phase, parts in est.phases.items():
        lines.append(f"  {phase:<14} {sum(parts.values()):6.1f} GiB")
        lines += [f"      {name:<28} {gib:6.1f}" for name, gib in parts.items()]
    lines.append(f"  peak: {est.peak_gib:.1f} GiB ({est.peak_phase})")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", nargs="+", required=True, help="experiment YAML file(s), merged left to right")
    p.add_argument("--gpu-memory", type=float, default=80.0, help="memory of one GPU in GiB (default 80)")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=AUTHORS_TOKENS,
        help=f"largest token budget per GPU to consider (default {AUTHORS_TOKENS}, the authors' setting)",
    )


def run(args: argparse.Namespace) -> int:
    from dynamo.config import load_config

    cfg = load_config(*args.config)
    if cfg.engine != "openrlhf":
        print(f"engine {cfg.engine!r}: the memory plan covers the openrlhf engine only")
        return 0
    shape, lay = model_shape(cfg.model.path), layout_of(cfg, args.gpu_memory)
    current = estimate(shape, lay)
    from dynamo.engines.openrlhf.config import OpenRLHFConfig

    mode = "dynamic batching" if OpenRLHFConfig.from_dict(cfg.openrlhf).dynamic_batch else "fixed micro-batches"
    print(
        render(
            current,
            f"{cfg.model.path} on {lay.world} x {args.gpu_memory:g} GiB, ZeRO-{lay.zero_stage}, as configured "
            f"({lay.train_tokens} training / {lay.rollout_tokens} log-prob tokens per micro-batch, {mode}):",
        )
    )
    fits = current.peak_gib <= args.gpu_memory
    print(f"  -> {'fits' if fits else 'does NOT fit'} in {args.gpu_memory:g} GiB\n")
    print(render_disk(disk_plan(cfg)) + "\n")
    best = pick(shape, lay, cap=args.max_tokens)
    if best is None:
        print(
            f"no token budget between one sequence ({lay.max_len}) and {args.max_tokens} tokens fits in "
            f"{HEADROOM:.0%} of {args.gpu_memory:g} GiB: raise zero_stage or use more GPUs"
        )
        return 1
    budget, est = best
    print(render(est, f"picked: {budget} tokens per GPU (largest <= {args.max_tokens} within {HEADROOM:.0%})"))
    print(
        f"\nSettings: openrlhf: {{dynamic_batch: true, max_tokens_per_gpu: {budget}, "
        f"rollout_max_tokens_per_gpu: {budget}}}  (fixed layout instead: micro_train_batch_size and "
        f"micro_rollout_batch_size {max(1, budget // lay.max_len)}, dynamic_batch: false)"
    )
    return 0 if fits else 1
