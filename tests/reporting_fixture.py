"""Synthetic finished runs (score files and summaries) for the reporting tests; no training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

METHODS = ["base", "grpo", "dapo", "dynamo"]
SEEDS = [1, 2, 3]
BENCHMARKS = ["a", "b", "c"]


def pass_curve(p1: float, n: int) -> dict[str, float]:
    """A plausible increasing Pass@k curve with Pass@1 = p1 (only its shape matters here)."""
    return {str(k): float(1 - (1 - p1) ** (k**0.5)) for k in range(1, n + 1)}


def write_run(
    root: Path,
    method: str,
    seed: int,
    scores: dict[str, float],
    *,
    n: int = 8,
    problems: int = 50,
    cost: dict | None = None,
    commit: str | None = "abc123",
) -> None:
    run = root / method / f"seed{seed}"
    for bench, p1 in scores.items():
        d = run / "eval" / bench
        d.mkdir(parents=True, exist_ok=True)
        (d / "scores.json").write_text(
            json.dumps(
                {
                    "benchmark": bench,
                    "variant": f"{bench}-{problems}",
                    "num_problems": problems,
                    "samples_per_problem": n,
                    "pass_at_1": p1,
                    "pass_at_k": pass_curve(p1, n),
                }
            )
        )
    if method != "base":
        summary: dict = {"seed": seed}
        if commit is not None:
            summary["git_commit"] = commit
        if cost is not None:
            summary["cost"] = cost
        (run / "summary.json").write_text(json.dumps(summary))


def make_runs(root: Path, *, n: int = 8, with_cost: bool = True, seed: int = 0) -> dict:
    """Runs of METHODS x SEEDS x BENCHMARKS; a shared per-seed offset makes pairing matter.

    Returns {(method, seed, bench): pass@1}.
    """
    rng = np.random.default_rng(seed)
    level = {"base": 0.30, "grpo": 0.40, "dapo": 0.41, "dynamo": 0.46}
    seed_offset = {s: rng.normal(0, 0.05) for s in SEEDS}  # shared by every method of a seed
    values = {}
    for method in METHODS:
        for s in SEEDS:
            scores = {}
            for j, bench in enumerate(BENCHMARKS):
                v = level[method] - 0.1 * j + seed_offset[s] + rng.normal(0, 0.01)
                scores[bench] = float(np.clip(v, 0.01, 0.99))
                values[(method, s, bench)] = scores[bench]
            cost = None
            if with_cost and method != "base":
                tokens = {"grpo": 1000, "dapo": 1500, "dynamo": 1000}[method] * (1 + 0.01 * s)
                cost = {
                    "prompts_seen": 960,
                    "responses_generated": int(tokens / 10),
                    "tokens_generated": tokens,
                    "tokens_trained": tokens * 0.9,
                    "seconds": {"rollout": 10.0, "grading": 2.0, "train": 5.0, "total": 17.5},
                    "gpu_seconds": 0.0,
                }
            write_run(root, method, s, scores, n=n, cost=cost)
    return values


def write_evaluated_run(root: Path, method: str, seed: int, verdicts: dict[str, list[list[bool]]]) -> None:
    """A run evaluated as `dynamo evaluate` writes it: samples.jsonl with per-sample verdicts and the
    scores.json computed from them, recording the samples' sha256. verdicts[bench][problem][sample]."""
    import hashlib

    from dynamo.evaluation.metrics import mean_pass_at_1, mean_pass_at_k

    for bench, correct in verdicts.items():
        d = root / method / f"seed{seed}" / "eval" / bench
        d.mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps(
                {"id": f"p{i}", "sample": j, "response": f"\\boxed{{{int(ok)}}}", "gold": ["1"], "correct": ok}
            )
            for i, row in enumerate(correct)
            for j, ok in enumerate(row)
        ]
        samples = "".join(line + "\n" for line in lines)
        (d / "samples.jsonl").write_text(samples)
        scores = {
            "benchmark": bench,
            "variant": f"{bench}-{len(correct)}",
            "num_problems": len(correct),
            "samples_per_problem": len(correct[0]),
            "pass_at_1": mean_pass_at_1(correct),
            "pass_at_k": {str(k): v for k, v in mean_pass_at_k(correct).items()},
            "samples_sha256": hashlib.sha256(samples.encode()).hexdigest(),
        }
        (d / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
