"""GPU check: DynaMO/GRPO step-time ratio and the log-prob pass's peak memory at the 7B shape, on one GPU.

    python benchmarks/gpu_check.py                 # ~5-10 min on one 80 GB GPU, no internet, no vLLM
    python benchmarks/gpu_check.py --real-engine   # the 1.5B smoke through the real OpenRLHF engine
    python benchmarks/gpu_check.py --help

--real-engine: two RL steps of `grpo` and then `dynamo` with the settings of
config/experiments/qwen2.5-math-1.5b-smoke.yaml laid out on one GPU (actor + one colocated vLLM
engine), through `dynamo train` and the real OpenRLHF 0.11.2 engine, on a generated pool of 64
arithmetic prompts (no dataset download); the model must be on disk (`dynamo stage --model
Qwen/Qwen2.5-Math-1.5B` once, or `--model DIR`). Needs a CUDA GPU, vLLM and an importable flash-attn,
and refuses with the list of what is missing otherwise. Writes one JSON report (`--report`): package
versions, driver and GPU, each step's phase times, the GPU's peak memory in each phase (nvidia-smi
sampled every 0.25 s; phase windows reconstructed from the step timings, which OpenRLHF sums into
the step time) beside `dynamo plan`'s estimate for the same layout, and the DynaMO/GRPO step-time
ratio. Estimated 6-10 minutes on one 80 GB GPU (not measured yet).

Default mode:

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
    p.add_argument(
        "--real-engine",
        action="store_true",
        help="run the 1.5B smoke (2 RL steps of grpo and dynamo) through the real OpenRLHF engine on one GPU "
        "and write one JSON report (needs vLLM and flash-attn)",
    )
    p.add_argument(
        "--model", default="", help="--real-engine: local directory of Qwen2.5-Math-1.5B (default: staged)"
    )
    p.add_argument("--workdir", default="gpu_check_runs", help="--real-engine: where the two runs are written")
    p.add_argument("--report", default="gpu_check_report.json", help="--real-engine: the JSON report to write")
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

    from dynamo.core.rules import make_rule
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
    trainer.rule = make_rule(trainer.method.allocation)  # the rule gives the advantages (its own baseline, if any)
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


# ---------------------------------------------------------------------------------------------
# --real-engine

SMOKE = ["config/config.yaml", "config/experiments/qwen2.5-math-1.5b-smoke.yaml"]
REAL_MODEL = "Qwen/Qwen2.5-Math-1.5B"
PHASES = ("generation", "make_experience", "ppo_train", "broadcast")  # OpenRLHF's order within a step
PLAN_PHASE = {"generation": "generation", "make_experience": "log-prob pass", "ppo_train": "training"}
STACK = ("torch", "vllm", "flash-attn", "openrlhf", "deepspeed", "ray", "transformers")


def real_engine_missing() -> list[str]:
    """What the real-engine mode lacks on this machine (empty: it can run)."""
    import torch

    from dynamo.doctor import flash_attn_import, package_version

    missing = []
    if not torch.cuda.is_available():
        missing.append(f"a CUDA GPU (torch {torch.__version__} sees none)")
    for name, why in (("openrlhf", "the engine"), ("vllm", "generation")):
        if package_version(name) is None:
            missing.append(f"{name} ({why}; README 'GPUs and clusters')")
    fa = flash_attn_import()
    if fa != "ok":
        missing.append("flash-attn (OpenRLHF imports it): " + ("not installed" if fa is None else fa))
    return missing


def one_gpu_override(model: str, pool: str) -> dict:
    """The smoke's settings on one GPU: one actor GPU and one colocated vLLM engine, a local prompt pool."""
    return {
        "experiment": "gpu-check",
        "model": {"path": model},
        "data": {"train_path": pool},
        "resources": {"train": {"gpus": 1}},
        "openrlhf": {"actor_gpus_per_node": 1, "vllm_num_engines": 1},
    }


def write_pool(path: Path, count: int = 64, seed: int = 0) -> None:
    """Arithmetic prompts with exact answers, in the smoke's record format (problem, answer)."""
    import json
    import random

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for _ in range(count):
            a, b, c = rng.randint(10, 99), rng.randint(10, 99), rng.randint(2, 9)
            fh.write(json.dumps({"problem": f"Compute ({a} + {b}) * {c}.", "answer": str((a + b) * c)}) + "\n")


def phase_windows(step_end: float, row: dict) -> dict[str, tuple[float, float]]:
    """(start, end) wall time of each phase of one step, back from when its metrics row appeared: the
    phases run in PHASES order and OpenRLHF's step time is their sum."""
    from dynamo import metrics_names as M

    names = {"generation": M.TIME_ROLLOUT, "make_experience": M.TIME_EXPERIENCE, "ppo_train": M.TIME_TRAIN}
    names["broadcast"] = M.TIME_SYNC
    windows, end = {}, step_end
    for phase in reversed(PHASES):
        seconds = float(row.get(names[phase], 0.0))
        windows[phase] = (end - seconds, end)
        end -= seconds
    return windows


def phase_peaks(samples: list[tuple[float, float]], windows: dict[str, tuple[float, float]]) -> dict:
    """Largest sampled GPU memory (GiB) inside each phase window; None where no sample fell in it."""
    peaks = {}
    for phase, (start, end) in windows.items():
        inside = [gib for t, gib in samples if start <= t <= end]
        peaks[phase] = max(inside) if inside else None
    return peaks


class MemorySampler:
    """nvidia-smi's used memory of GPU 0 (all processes: actor and vLLM), every `interval` seconds."""

    def __init__(self, interval: float = 0.25):
        import threading

        self.interval, self.samples, self._stop = interval, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import subprocess

        query = ["nvidia-smi", "--id=0", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            out = subprocess.run(query, capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append((time.time(), float(out.stdout.split()[0]) / 1024))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_method(cmd: list[str], run_dir: Path, log: Path, poll: float = 0.5) -> list[dict]:
    """Run one training command (output to `log`); return its metrics rows, each with the wall time it
    appeared in run_dir/metrics.jsonl (the end of that step: the row is written right after it)."""
    import subprocess

    metrics = run_dir / "metrics.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        rows = _follow(proc, metrics, poll)
    if proc.returncode != 0:
        raise RuntimeError(f"training exited with {proc.returncode}: see {log}")
    return rows


def _follow(proc, metrics: Path, poll: float) -> list[dict]:
    import json

    rows: list[dict] = []

    def read_new() -> None:
        if metrics.exists():
            lines = metrics.read_text().splitlines()
            for line in lines[len(rows) :]:
                rows.append({**json.loads(line), "_seen_at": time.time()})

    while proc.poll() is None:
        read_new()
        time.sleep(poll)
    read_new()
    return rows


def real_engine(args) -> int:
    import json
    import os

    import yaml

    from dynamo import metrics_names as M
    from dynamo.config import load_config
    from dynamo.doctor import driver_version, package_version
    from dynamo.io import write_json_atomic
    from dynamo.plan import estimate, layout_of, model_shape
    from dynamo.stage import plan_items

    missing = real_engine_missing()
    model = os.path.abspath(args.model or str(ROOT / plan_items(REAL_MODEL, None, []).model[1]))
    if not os.path.isdir(model):
        missing.append(f"the model on disk: {model} (`dynamo stage --model {REAL_MODEL}` once, or --model DIR)")
    if missing:
        print(
            "gpu_check.py --real-engine cannot run here; missing:\n  - " + "\n  - ".join(missing), file=sys.stderr
        )
        return 2
    import torch

    work = Path(args.workdir).resolve()
    pool, override = work / "prompts.jsonl", work / "one-gpu.yaml"
    write_pool(pool)
    override.write_text(yaml.safe_dump(one_gpu_override(model, str(pool))))
    configs = [str(ROOT / c) for c in SMOKE] + [str(override)]
    cfg = load_config(*configs)
    gpu_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    plan = estimate(model_shape(model), layout_of(cfg, gpu_gib)).totals
    report = {
        "versions": {name: package_version(name) for name in STACK},
        "cuda": torch.version.cuda,
        "driver": driver_version(),
        "gpu": f"{torch.cuda.get_device_name(0)} ({gpu_gib:.1f} GiB)",
        "config": configs,
        "plan_gib": plan,
        "methods": {},
    }
    with MemorySampler() as sampler:
        for method in ("grpo", "dynamo"):
            run_dir = work / method
            cmd = [sys.executable, "-m", "dynamo.cli", "train", "--config", *configs, "--method", method]
            cmd += ["--seed", "1", "--out", str(run_dir), "--base-model", model, "--fresh"]
            print(f"{method}: {' '.join(cmd)}", flush=True)
            rows = run_method(cmd, run_dir, work / f"{method}.log")
            steps = []
            for row in rows:
                windows = phase_windows(row["_seen_at"], row)
                peaks = phase_peaks(sampler.samples, windows)
                times = {
                    p: row.get(k)
                    for p, k in zip(PHASES, (M.TIME_ROLLOUT, M.TIME_EXPERIENCE, M.TIME_TRAIN, M.TIME_SYNC))
                }
                steps.append(
                    {
                        "step": row.get(M.STEP),
                        "seconds": times,
                        "step_seconds": row.get(M.TIME_STEP),
                        "peak_gib": peaks,
                    }
                )
            report["methods"][method] = {"steps": steps}
    last = {m: report["methods"][m]["steps"][-1]["step_seconds"] for m in ("grpo", "dynamo")}
    report["dynamo_over_grpo_last_step"] = last["dynamo"] / last["grpo"] if all(last.values()) else None
    report["peak_vs_plan"] = {
        phase: {
            "measured_gib": max(
                (
                    s["peak_gib"][phase]
                    for m in report["methods"].values()
                    for s in m["steps"]
                    if s["peak_gib"][phase]
                ),
                default=None,
            ),
            "plan_gib": plan[plan_phase],
        }
        for phase, plan_phase in PLAN_PHASE.items()
    }
    write_json_atomic(Path(args.report), report)
    print(json.dumps({k: report[k] for k in ("dynamo_over_grpo_last_step", "peak_vs_plan")}, indent=1))
    print(f"report: {args.report}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.real_engine:
        return real_engine(args)
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
