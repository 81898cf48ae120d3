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
