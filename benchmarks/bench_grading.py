"""Grading throughput: `dynamo.grading.grade_many` against a naive math-verify loop.

    python benchmarks/bench_grading.py [--data-dir ../shared/benchmarks] [--samples 32] [--workers N]

Builds realistic evaluation sets from the real MATH500 and AIME 2024 files: for every problem,
`--samples` responses, each drawn from 4 distinct candidate answers (the gold, two near misses
with one digit changed, one answer of another problem; `--wrong other`: three answers of other
problems) and wrapped in varied step-by-step "reasoning" text and final-answer phrasings, as a
sampled model's outputs are -- many repeated final answers, no two responses alike.

Where the time goes: both sides parse every distinct answer string once (math-verify's own
lru_cache catches repeats within a problem's contiguous samples), and that ANTLR parse is most
of grade_many's remaining CPU; the rest of the gain is the deduplicated sympy comparisons and
parallel workers, so the wall-clock speedup grows with free cores.

The naive loop is one pair at a time, in this process: `verify(parse("\\boxed{gold}"),
parse(response))` (math-verify's defaults, i.e. `engine.reference_grade`). Both sides are warmed
up first on other answers (imports, ANTLR caches; for grade_many also the worker pool), so the
timings compare steady-state grading. Verdicts must be identical. The last line of output is a
JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dynamo.grading import _get_pool, grade_many, grading_stats, shutdown  # noqa: E402
from dynamo.grading.engine import WARMUP_ANSWERS, reference_grade  # noqa: E402
from dynamo.tasks import load_benchmark  # noqa: E402

STEPS = [
    "We start from the equation $x^2 + {a}x + {b} = 0$.",
    "Multiplying out, $({a} + {b})({a} - {b}) = {a}^2 - {b}^2$.",
    "Then ${a} \\cdot {b} = {ab}$, and we keep this value.",
    "Simplifying the fraction gives $\\frac{{{a}}}{{{b}}}$ in lowest terms.",
    "Let me double check: {a} + {b} = {s}.",
    "By the Pythagorean theorem, $c = \\sqrt{{{a}^2 + {b}^2}}$.",
    "Substituting $x = {a}$ into the expression yields {ab}.",
    "Hence the sum of the roots is $-{a}$ and their product is ${b}$.",
]
ENDINGS = [
    "Therefore, the final answer is $\\boxed{{{x}}}$.",
    "So the answer is \\boxed{{{x}}}.",
    "Putting it together: $\\boxed{{{x}}}$",
    "The final answer is $\\boxed{{{x}}}$. I hope it is correct.",
    "Thus the answer is ${x}$.",
]


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def reasoning(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(3, 8)):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        parts.append(rng.choice(STEPS).format(a=a, b=b, ab=a * b, s=a + b))
    return " ".join(parts)


def near_miss(gold: str, rng: random.Random) -> str | None:
    """The gold with one digit changed (an arithmetic slip): same shape, different value."""
    digits = [i for i, ch in enumerate(gold) if ch.isdigit()]
    if not digits:
        return None
    i = rng.choice(digits)
    return gold[:i] + str((int(gold[i]) + rng.randint(1, 9)) % 10) + gold[i + 1 :]


def build_pairs(golds: list[str], samples: int, rng: random.Random, wrong: str = "near") -> list[tuple[str, str]]:
    """`samples` responses per gold answer, drawn from 4 distinct candidates: the gold and three
    wrong answers -- wrong="near": two near misses (a digit changed; another problem's answer
    when the gold has no digit) and one answer of another problem; wrong="other": three answers
    of other problems (fewer distinct strings overall, as they recur across problems)."""
    pairs = []
    for gold in golds:
        candidates = [gold]
        while len(candidates) < 4:
            candidate = near_miss(gold, rng) if wrong == "near" and len(candidates) < 3 else None
            candidate = candidate or rng.choice(golds)
            if candidate not in candidates:
                candidates.append(candidate)
        for _ in range(samples):
            answer = rng.choices(candidates, [0.4, 0.3, 0.2, 0.1])[0]
            ending = rng.choices(ENDINGS, [0.4, 0.25, 0.15, 0.1, 0.1])[0]
            pairs.append((reasoning(rng) + " " + ending.format(x=answer), gold))
    return pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "benchmarks")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="problems per file (default: all)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wrong", choices=["near", "other"], default="near", help="kind of wrong answers")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # math-verify warns on every timeout

    rng = random.Random(args.seed)
    pairs: list[tuple[str, str]] = []
    sources = {}
    for name, file in (("math500", "math500.json"), ("aime24", "aime2024.json")):
        records = load_benchmark(name, args.data_dir / file)[: args.limit]
        golds = [r["answers"][0] for r in records]
        pairs += build_pairs(golds, args.samples, rng, args.wrong)
        sources[name] = len(records)
    responses = [r for r, _ in pairs]
    golds = [g for _, g in pairs]

    # Warm-up, identical for both sides, on generic answer shapes that are not benchmark data:
    # imports and ANTLR's first-parse costs (the workers do the same at start-up).
    warm = [(f"The answer is $\\boxed{{{a}}}$.", g) for a in WARMUP_ANSWERS for g in ("7", a)]
    for response, gold in warm:
        reference_grade(response, gold)
    t0 = time.perf_counter()
    grade_many([r for r, _ in warm], [g for _, g in warm], workers=args.workers)
    pool_start_s = time.perf_counter() - t0

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    naive = [reference_grade(response, gold) for response, gold in pairs]
    naive_s = time.perf_counter() - t0
    naive_cpu = time.process_time() - cpu0

    pids = [w.proc.pid for w in _get_pool().workers]
    cpu0 = time.process_time() + sum(map(_proc_cpu_seconds, pids))
    t0 = time.perf_counter()
    fast = grade_many(responses, golds, workers=args.workers)
    fast_s = time.perf_counter() - t0
    fast_cpu = time.process_time() + sum(map(_proc_cpu_seconds, pids)) - cpu0
    stats = grading_stats()
    shutdown()

    mismatches = [i for i, (a, b) in enumerate(zip(naive, fast)) if a != b]
    figures = {
        "pairs": len(pairs),
        "problems": sources,
        "samples_per_problem": args.samples,
        "distinct_answers_per_problem": 4,
        "wrong_answers": args.wrong,
        "correct_fraction": round(sum(naive) / len(naive), 4),
        "naive_s": round(naive_s, 3),
        "fast_s": round(fast_s, 3),
        "speedup": round(naive_s / fast_s, 2),
        "naive_cpu_s": round(naive_cpu, 3),
        "fast_cpu_s": round(fast_cpu, 3),
        "cpu_speedup": round(naive_cpu / fast_cpu, 2) if fast_cpu > 0 else None,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "naive_pairs_per_s": round(len(pairs) / naive_s, 1),
        "fast_pairs_per_s": round(len(pairs) / fast_s, 1),
        "workers": args.workers or min(8, os.cpu_count() or 1),
        "cpu_count": os.cpu_count(),
        "pool_start_s": round(pool_start_s, 3),
        "failures": sum(stats.get(k, 0) for k in ("timeout", "killed", "error", "crash")),
        "identical_verdicts": not mismatches,
    }
    print(f"{'':>10} {'seconds':>9} {'pairs/s':>9}")
    print(f"{'naive':>10} {naive_s:9.2f} {figures['naive_pairs_per_s']:9.1f}")
    print(f"{'grade_many':>10} {fast_s:9.2f} {figures['fast_pairs_per_s']:9.1f}   ({figures['speedup']}x)")
    print(
        f"CPU seconds: naive {naive_cpu:.2f}, grade_many (parent + workers) {fast_cpu:.2f}; "
        f"load average {figures['load_average_1min']} on {os.cpu_count()} cores"
    )
    for i in mismatches[:5]:
        print(f"MISMATCH naive={naive[i]} fast={fast[i]}: gold {golds[i]!r} response {responses[i][-120:]!r}")
    print(json.dumps(figures))
    assert not mismatches, f"{len(mismatches)} verdicts differ from the naive loop"
    return 0


if __name__ == "__main__":
    sys.exit(main())
