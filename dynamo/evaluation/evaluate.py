"""`dynamo evaluate`: sample k answers per benchmark problem, grade them, report Pass@1/Pass@k.

    dynamo evaluate --model PATH --benchmarks aime24,math500,amc23=data/amc.json --samples 32 --out DIR

A benchmark item is a registered name (loaded from the hub) or NAME=PATH (a local JSON, JSONL,
parquet file or directory in any layout the loader knows). For each one this writes, atomically
(temporary file, then os.replace):

    DIR/<name>/samples.jsonl   one line per sample: {"id", "sample", "response", "extracted",
                               "gold", "correct", "truncated", "failure"}
    DIR/<name>/scores.json     {"benchmark", "variant", "num_problems", "samples_per_problem",
                               "pass_at_1", "pass_at_k": {"1": .., ..., "<n>": ..},
                               "grading_failures", "seconds", "model", "samples_sha256",
                               "model_sha256", "skipped_over_long"}

`samples_sha256` is the sha256 of the samples.jsonl bytes the scores were computed from and
`model_sha256` the sha256 of the model's identity (`dynamo.fingerprint.model_identity`: config.json
and the weight files' sizes and hashes), so `dynamo verify` and the scores step can check that a
score file belongs to its samples (`dynamo.evaluation.verify`).

Prompts are checked against the model's context before any generation: a prompt longer than
max_position_embeddings - max_new_tokens tokens is refused (`over_long="reject"`, one line naming
the file and problem id) or left out (`"skip"`: counted in the log and listed in scores.json).

Each benchmark is sampled with the same seed (torch.manual_seed(seed) for the HF backend,
per-prompt seeds seed + i for vLLM), so results do not depend on which others are evaluated.
The Python entry point is `evaluate(...)`. While `dynamo evaluate` runs, DIR is locked
(dynamo/runlock.py): a second one with the same --out stops at once with one line naming the first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dynamo.errors import UserError
from dynamo.evaluation.metrics import mean_pass_at_1, mean_pass_at_k
from dynamo.grading import grade_details
from dynamo.io import write_text_atomic
from dynamo.tasks import TEMPLATES, build_prompt, load_benchmark, resolve_template

OVER_LONG_POLICIES = ("reject", "skip")


def parse_benchmark_items(items: Sequence[str]) -> list[tuple[str, str | None]]:
    """["aime24", "math500=/x.json,amc23"] -> [("aime24", None), ("math500", "/x.json"), ("amc23", None)]."""
    parsed: list[tuple[str, str | None]] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            name, _, path = part.partition("=")
            parsed.append((name.strip(), path.strip() or None))
    names = [name for name, _ in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"benchmark listed twice: {', '.join(duplicates)}")
    if not parsed:
        raise ValueError("no benchmarks given")
    return parsed


def model_context(engine: Any) -> int | None:
    """Positions the backend's model can attend over (prompt + response), None when unknown."""
    config = getattr(getattr(engine, "model", None), "config", None)
    context = getattr(config, "max_position_embeddings", None)
    if context is None:  # vLLM
        model_config = getattr(getattr(getattr(engine, "llm", None), "llm_engine", None), "model_config", None)
        context = getattr(model_config, "max_model_len", None)
    return int(context) if context else None


def fit_to_context(
    source: str,
    records: list[dict[str, Any]],
    prompts: list[str],
    tokenizer: Any,
    context: int | None,
    max_new_tokens: int,
    over_long: str,
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(records, prompts) whose prompt leaves room for max_new_tokens in the context, and the ids
    left out; with over_long="reject" an over-long prompt raises UserError naming it instead."""
    if over_long not in OVER_LONG_POLICIES:
        raise UserError(f"over_long must be one of {OVER_LONG_POLICIES}, not {over_long!r}")
    if tokenizer is None or context is None:
        return records, prompts, []
    budget = context - max_new_tokens
    if budget < 1:
        raise UserError(
            f"max_new_tokens {max_new_tokens} leaves no room for a prompt in a {context}-position model"
        )
    # No token covers more characters than its vocabulary string has, so a prompt longer than
    # budget x the longest token string is over budget without tokenizing it (tokenizing a 1 MB
    # prompt costs seconds and hundreds of MB); x2 as a tokenizer's normaliser may merge characters.
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else None
    char_bound = 2 * budget * max(map(len, vocab)) if vocab else None
    lengths: list[int | None] = [None] * len(prompts)
    to_count = [i for i, p in enumerate(prompts) if char_bound is None or len(p) <= char_bound]
    if to_count:  # same tokenization as the backends (no special tokens added: templates carry their own)
        encoded = tokenizer([prompts[i] for i in to_count], add_special_tokens=False)["input_ids"]
        for i, ids in zip(to_count, encoded):
            lengths[i] = len(ids)
    over = [i for i, n in enumerate(lengths) if n is None or n > budget]
    if over and over_long == "reject":
        i = over[0]
        size = f"{lengths[i]} tokens" if lengths[i] is not None else f"{len(prompts[i])} characters"
        raise UserError(
            f"{source}, problem {records[i]['id']!r}: prompt of {size}, over the {budget} tokens the model "
            f"allows ({context} positions - {max_new_tokens} new tokens); {len(over)} such problem(s) "
            "(--over-long skip leaves them out)"
        )
    over_set = set(over)
    keep = [i for i in range(len(records)) if i not in over_set]
    return [records[i] for i in keep], [prompts[i] for i in keep], [records[i]["id"] for i in over]


def evaluate(
    model: str | Path,
    benchmarks: Sequence[str | tuple[str, str | None]],
    out_dir: str | Path,
    *,
    samples: int = 32,
    limit: int | None = None,
    seed: int = 0,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int | None = None,
    backend: Any = "hf",
    batch_size: int = 64,
    template: str = "qwen-boxed",
    use_chat_template: bool | None = None,
    device: str | None = None,
    grading_workers: int | None = None,
    progress: bool = True,
    over_long: str = "reject",
) -> dict[str, dict[str, Any]]:
    """Evaluate `model` on each benchmark; returns {name: scores} (as written to scores.json).

    `backend` is "hf", "vllm" or an already built backend object (see dynamo.generation).
    `over_long`: "reject" or "skip" a problem whose prompt does not fit the model's context.
    """
    from tqdm.auto import tqdm

    from dynamo.fingerprint import model_identity
    from dynamo.generation import default_max_new_tokens, load_backend

    if samples < 1:
        raise ValueError("samples must be >= 1")
    items = [b if isinstance(b, tuple) else parse_benchmark_items([b])[0] for b in benchmarks]
    template = resolve_template(template)
    out_dir = Path(out_dir)
    # Load every benchmark first: a bad file should fail before any compute is spent.
    problem_sets = {name: load_benchmark(name, path) for name, path in items}

    engine = (
        load_backend(backend, str(model), batch_size=batch_size, seed=seed, device=device)
        if isinstance(backend, str)
        else backend
    )
    if max_new_tokens is None:
        config = getattr(getattr(engine, "model", None), "config", None)
        max_new_tokens = default_max_new_tokens(str(model), getattr(config, "max_position_embeddings", None))

    # Every benchmark's prompts are checked against the context before any of them is sampled.
    context = model_context(engine)
    prepared = {}
    for name, records in problem_sets.items():
        variant = records.variant
        if limit and limit < len(records):  # None or 0: all problems
            records, variant = records[:limit], f"{variant}[:{limit}]"
        prompts = [
            build_prompt(r["problem"], engine.tokenizer, template=template, use_chat_template=use_chat_template)
            for r in records
        ]
        source = problem_sets[name].source
        records, prompts, skipped = fit_to_context(
            source, list(records), prompts, engine.tokenizer, context, max_new_tokens, over_long
        )
        if skipped:
            print(f"{name}: skipped {len(skipped)} problem(s) whose prompt does not fit the context: {skipped}")
        if not records:
            raise UserError(f"{source}: no problem fits the model's context (all {len(skipped)} skipped)")
        prepared[name] = (records, variant, prompts, skipped)
    model_hash = hashlib.sha256(json.dumps(model_identity(str(model)), sort_keys=True).encode()).hexdigest()

    all_scores: dict[str, dict[str, Any]] = {}
    for name, (records, variant, prompts, skipped) in prepared.items():
        start = time.perf_counter()
        with tqdm(
            total=len(prompts) * samples, desc=f"{name}: sampling", unit="sample", disable=not progress
        ) as bar:
            generations = engine.generate(
                prompts,
                [samples] * len(prompts),
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
                progress=bar.update,
            )
        golds = [records[g.prompt_index]["answers"] for g in generations]
        grades = grade_details([g.text for g in generations], golds, workers=grading_workers)

        lines, correct = [], [[] for _ in records]
        sample_index = [0] * len(records)
        for gen, grade in zip(generations, grades):
            record = records[gen.prompt_index]
            lines.append(
                json.dumps(
                    {
                        "id": record["id"],
                        "sample": sample_index[gen.prompt_index],
                        "response": gen.text,
                        "extracted": grade.extracted,
                        "gold": record["answers"],
                        "correct": grade.correct,
                        "truncated": gen.truncated,
                        "failure": grade.failure,
                    }
                )
            )
            sample_index[gen.prompt_index] += 1
            correct[gen.prompt_index].append(grade.correct)
        samples_text = "".join(line + "\n" for line in lines)
        scores = {
            "benchmark": name,
            "variant": variant,
            "num_problems": len(records),
            "samples_per_problem": samples,
            "pass_at_1": mean_pass_at_1(correct),
            "pass_at_k": {str(k): v for k, v in mean_pass_at_k(correct).items()},
            "grading_failures": sum(g.failure is not None for g in grades),
            "seconds": round(time.perf_counter() - start, 3),
            "model": str(model),
            "samples_sha256": hashlib.sha256(samples_text.encode()).hexdigest(),
            "model_sha256": model_hash,
            "skipped_over_long": skipped,
        }
        write_text_atomic(out_dir / name / "samples.jsonl", samples_text)
        write_text_atomic(out_dir / name / "scores.json", json.dumps(scores, indent=2) + "\n")
        all_scores[name] = scores
        if progress:
            print(
                f"{name} ({variant}): pass@1 {scores['pass_at_1']:.4f}  pass@{samples} "
                f"{scores['pass_at_k'][str(samples)]:.4f}  grading failures {scores['grading_failures']}"
            )
    return all_scores


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory (or hub id where reachable)")
    parser.add_argument(
        "--benchmarks",
        required=True,
        action="append",
        help="comma-separated NAME or NAME=PATH items; may be repeated. Hub benchmarks by NAME: aime24, "
        "aime25, amc23, math500, minerva, olympiadbench. The embedded arithmetic splits have no hub copy and "
        "need their file from `dynamo make-task`: arith-easy=data/EXP/arith-easy.jsonl (likewise arith-medium, "
        "arith-hard, arith-id; EXP is the config's experiment, e.g. embedded). Any NAME=PATH loads a local "
        "JSON, JSONL or parquet file",
    )
    parser.add_argument("--samples", type=int, default=32, help="samples per problem (n of Pass@k)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--limit", type=int, default=0, help="evaluate only the first N problems of each set (0 = all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed, in [0, 2^32 - 1]")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: per model family")
    parser.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per HF generate call")
    parser.add_argument(
        "--template",
        default="qwen-boxed",
        help=f"prompt template: one of {sorted(TEMPLATES)}, a file, or a string with {{problem}}",
    )
    chat = parser.add_mutually_exclusive_group()
    chat.add_argument(
        "--chat-template", dest="chat_template", action="store_const", const=True, default=None,
        help="always wrap the prompt with the tokenizer's chat template (default: when it has one)",
    )  # fmt: skip
    chat.add_argument(
        "--no-chat-template", dest="chat_template", action="store_const", const=False,
        help="plain template string even if the tokenizer has a chat template",
    )  # fmt: skip
    parser.add_argument("--device", default=None, help="HF backend device (default: cuda if available)")
    parser.add_argument(
        "--grading-workers", type=int, default=None, help="grading processes (default: cores, <= 8)"
    )
    parser.add_argument(
        "--over-long",
        choices=OVER_LONG_POLICIES,
        default="reject",
        help="a problem whose prompt does not fit the model's context (positions - max new tokens): "
        "reject = stop before sampling, naming it; skip = leave it out, listed in the log and scores.json",
    )


def run(args: argparse.Namespace) -> int:
    from dynamo.runlock import hold
    from dynamo.validation import path_problem, seed_problem

    # Before any download or compute: a local model path that does not exist (else HF calls it a bad repo id).
    problem = path_problem("--model", str(args.model), hub_allowed=True, what="model directory")
    if problem or (problem := seed_problem("--seed", args.seed)):
        raise UserError(problem)
    with hold(args.out, what="dynamo evaluate"):  # one writer per output directory
        _evaluate_args(args)
    return 0


def _evaluate_args(args: argparse.Namespace) -> None:
    evaluate(
        args.model,
        parse_benchmark_items(args.benchmarks),
        args.out,
        samples=args.samples,
        limit=args.limit,
        seed=args.seed,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        backend=args.backend,
        batch_size=args.batch_size,
        template=args.template,
        use_chat_template=args.chat_template,
        device=args.device,
        grading_workers=args.grading_workers,
        over_long=args.over_long,
    )
