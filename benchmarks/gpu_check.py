"""GPU check: DynaMO/GRPO step-time ratio and the log-prob pass's peak memory at the 7B shape, on one GPU.

    python benchmarks/gpu_check.py                 # ~5-10 min on one 80 GB GPU, no internet, no vLLM
    python benchmarks/gpu_check.py --help

Needs only torch and transformers (any recent pair: torch >= 2.4, transformers >= 4.45 have Qwen2)
plus this project installed without its dependencies (`pip install --no-deps -e .`) and numpy; no
model download: the models are built from Qwen2.5-Math-7B's published shape with random weights,
in bf16, on CUDA. No grading either: correctness labels are drawn at random, so math-verify is
not needed.

1. Step time. The local engine's update step (`LocalTrainer.update`: old log-probs, PPO epoch over
   mini-batches and micro-batches, loss, AdamW step) runs on the same synthetic rollout batch for
   `grpo` and `dynamo` (entropy pass, modulation factors); the ratio of their median times is what
   DynaMO adds to an optimisation step. The model has the 7B width but `--layers` layers (default
   4), so that weights, gradients and AdamW states fit on one GPU. Generation is not timed: it is
   the same for both methods (DynaMO only changes how many samples each prompt gets).
2. Log-prob pass memory. One no-grad forward + log-softmax of the full 28-layer 7B shape on one
   micro-batch of the configured token budget (`openrlhf.max_tokens_per_gpu`, or micro_rollout_batch_size
   x max_len with fixed micro-batches), peak CUDA memory measured, printed beside `dynamo plan`'s
   estimate of the same terms (bf16 weights + logits + activations, without the optimizer shards
   and vLLM that the real run also holds).

On a machine without CUDA it refuses with a message. Exit code 0 when both parts ran.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="gpu_check.py",
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        nargs="+",
        default=["config/config.yaml", "config/experiments/qwen2.5-math-7b.yaml"],
        help="experiment YAMLs giving the micro-batch layout and batch sizes (default: the 7B config)",
    )
    p.add_argument("--layers", type=int, default=4, help="decoder layers of the step-time model (7B width)")
    p.add_argument("--prompts", type=int, default=8, help="prompts in the synthetic rollout batch")
    p.add_argument("--n", type=int, default=4, help="responses per prompt in the synthetic batch")
    p.add_argument("--seq-len", type=int, default=1024, help="tokens per synthetic sequence (prompt + response)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per method (after one warm-up step)")
    p.add_argument("--skip-memory", action="store_true", help="only the step-time part")
    return p.parse_args(argv)


def qwen_config(layers: int | None = None, **shrink):
    """Qwen2.5-Math-7B's shape (dynamo.plan.KNOWN_SHAPES) as a transformers config, optionally smaller."""
    from transformers import Qwen2Config

    from dynamo.plan import KNOWN_SHAPES

    s = KNOWN_SHAPES["Qwen/Qwen2.5-Math-7B"]
    cfg = dict(
        vocab_size=s.vocab,
        hidden_size=s.hidden,
        num_hidden_layers=layers or s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        intermediate_size=s.intermediate,
        tie_word_embeddings=s.tied,
        max_position_embeddings=32768,
    )
    cfg.update(shrink)
    return Qwen2Config(**cfg)


def synthetic_batch(vocab: int, prompts: int, n: int, seq_len: int, seed: int = 0):
    """A rollout batch of random tokens: prompt = first quarter, random correctness per response."""
    import torch

    from dynamo.engines.local.rollouts import build_batch
    from dynamo.generation import Generation

    g = torch.Generator().manual_seed(seed)
    prompt_len = seq_len // 4
    gens, correct = [], []
    for i in range(prompts):
        prompt = torch.randint(3, vocab, (prompt_len,), generator=g).tolist()
        for _ in range(n):
            length = int(torch.randint(seq_len // 4, seq_len - prompt_len + 1, (1,), generator=g))
            response = torch.randint(3, vocab, (length,), generator=g).tolist()
            gens.append(Generation(i, prompt, response, "", False))
            correct.append(bool(torch.rand(1, generator=g) < 0.5))
    return build_batch(gens, [f"p{i}" for i in range(prompts)], correct, pad_token_id=0, max_new_tokens=seq_len)


def step_seconds(model, method_name: str, cfg, batch, repeats: int, device: str) -> list[float]:
    """Times of LocalTrainer.update (the local engine's optimisation step) on `batch`."""
    import torch

    from dynamo.engines.common import objective_generator
    from dynamo.engines.local.trainer import LocalTrainer

    trainer = object.__new__(LocalTrainer)  # the step only: no tokenizer, no generation, no run directory
    trainer.cfg, trainer.t, trainer.method, trainer.seed, trainer.step = (
        cfg,
        cfg.train,
        cfg.method(method_name),
        0,
        0,
    )
    trainer.model = model
    trainer.generator = objective_generator(0)  # the token objective's random picks (Clip-Cov)
    trainer.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=cfg.train.weight_decay)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda s: 1.0)
    times = []
    for i in range(repeats + 1):
        timer = defaultdict(float)  # the trainer adds its phases (experience, train, ...)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.update(batch, timer)
        if device == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step warms up kernels and allocates AdamW states
            times.append(time.perf_counter() - t0)
    del trainer
    return times


def check_step_time(cfg, args, device: str = "cuda", dtype=None) -> float:
    import dataclasses

    import torch
    from transformers import Qwen2ForCausalLM

    dtype = dtype or torch.bfloat16
    mcfg = qwen_config(args.layers, **getattr(args, "shrink", {}))
    batch = synthetic_batch(mcfg.vocab_size, args.prompts, args.n, args.seq_len)
    batch = dataclasses.replace(
        batch,
        **{
            f.name: getattr(batch, f.name).to(device)
            for f in dataclasses.fields(batch)
            if torch.is_tensor(getattr(batch, f.name))
        },
    )
    train = dataclasses.replace(
        cfg.train, mini_batch_prompts=max(1, args.prompts // 2), micro_batch_sequences=max(1, args.n), ppo_epochs=1
    )
    cfg = dataclasses.replace(cfg, train=train)
    medians = {}
    for name in ("grpo", "dynamo"):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(mcfg).to(device=device, dtype=dtype)
        model.gradient_checkpointing_enable()
        model.train()
        times = step_seconds(model, name, cfg, batch, args.repeats, device)
        medians[name] = statistics.median(times)
        listed = ", ".join(f"{t:.3f}" for t in times)
        print(f"  {name:<7} step {medians[name]:.3f} s (median of {len(times)}: {listed})")
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    ratio = medians["dynamo"] / medians["grpo"]
    print(f"  DynaMO / GRPO step-time ratio: {ratio:.3f}")
    return ratio


def check_logprob_memory(cfg, device: str = "cuda", **shrink) -> tuple[float, float]:
    """(measured peak GiB, plan estimate GiB) of one no-grad log-prob micro-batch at the 7B shape."""
    import torch
    from transformers import Qwen2ForCausalLM

    from dynamo.engines.local.policy import token_logprobs
    from dynamo.plan import GIB, ModelShape, estimate, layout_of

    mcfg = qwen_config(None, **shrink)
    lay = layout_of(cfg, 80.0)
    tokens = lay.rollout_tokens
    seqs = max(1, tokens // lay.max_len)
    seq_len = tokens // seqs
    with torch.device(device):
        model = Qwen2ForCausalLM(mcfg).to(torch.bfloat16)
    model.eval()
    ids = torch.randint(3, mcfg.vocab_size, (seqs, seq_len), device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        token_logprobs(model, ids, torch.ones_like(ids))
    peak = torch.cuda.max_memory_allocated() / GIB if device == "cuda" else float("nan")
    shape = ModelShape.from_hf_config(mcfg.to_dict())
    parts = estimate(shape, lay).phases["log-prob pass"]
    planned = parts["weights (bf16)"] + parts["logits (no grad)"] + parts["activations (no grad)"]
    print(
        f"  log-prob pass, {seqs} x {seq_len} tokens, {shape.num_params() / 1e9:.2f} B params: "
        f"peak {peak:.1f} GiB measured, {planned:.1f} GiB planned (weights + logits + activations)"
    )
    return peak, planned


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        why = "CPU build" if torch.version.cuda is None else "no visible device"
        print(
            f"gpu_check.py needs a CUDA GPU: torch {torch.__version__} sees none ({why}). "
            "It measures GPU step time and GPU memory; on CPU there is nothing to measure. "
            "Run it on a GPU node (`--help` says what it does).",
            file=sys.stderr,
        )
        return 2
    from dynamo.config import load_config

    cfg = load_config(*args.config)
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__} (CUDA {torch.version.cuda})")
    print(
        f"1. step time, 7B width x {args.layers} layers, {args.prompts} prompts x {args.n}, {args.seq_len} tokens"
    )
    check_step_time(cfg, args)
    if not args.skip_memory:
        print("2. log-prob pass at the full 7B shape")
        check_logprob_memory(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
