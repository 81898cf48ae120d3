"""Grading throughput: `dynamo.grading.grade_many` against a naive math-verify loop, side by side.

    python benchmarks/bench_grading.py [--data-dir ../shared/benchmarks] [--samples 32] [--workers 1,2]

Builds a realistic evaluation set from the real MATH500 and AIME 2024 files: for every problem,
`--samples` responses whose final answers are drawn from a few candidates -- the gold, an
equivalent form of it where a model would plausibly write one (\\frac{a}{b} -> a/b, 0.5 ->
\\frac{1}{2}, x=5 -> 5, 90^\\circ -> 90, 12345 -> 12{,}345), a near miss (one digit changed) and
another problem's gold -- so answers repeat a lot, while every response is a distinct text:
step-by-step "reasoning" of varied length with its own numbers, then one of several
final-answer phrasings (boxed in a sentence, "the final answer is $\\boxed{..}$", a display
block, ...). Some responses have no box (6%), some two (6%: an intermediate result boxed
mid-way), some a box that does not parse (3%).

The naive side grades one pair at a time, in this process, with math-verify's defaults exactly as
the grader's definition has it (`engine.reference_grade`): `parse(response)`,
`parse("\\boxed{gold}")`, `verify(...)`. The fast side is `grade_many` on the whole list, timed
once per worker count in `--workers` (default: 1, and one per core up to 8), each time on a fresh
pool with empty caches. Both sides are warmed up first on generic answer shapes that are not
benchmark data (imports, ANTLR's first-parse costs; for grade_many also the pool start), so the
timings compare steady-state grading. Verdicts must be identical on every pair.

What bounds the ratio: both sides parse every distinct answer and verify every distinct (answer,
gold) pair at least once, and both parse in full the responses whose answer depends on the rest
of the text (no box, a box that does not parse). With one worker that shared work bounds the
speed-up (the CPU-time ratio); more workers divide it by the free cores, so the wall-clock ratio
depends on the machine. CPU seconds count the parent and the workers; the load average (1 min,
before and after) shows how busy the shared machine was. The last line of output is a JSON object
with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import sys
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dynamo.grading import _get_pool, default_workers, grade_many, grading_stats, shutdown  # noqa: E402
from dynamo.grading.engine import WARMUP_ANSWERS, reference_grade  # noqa: E402
from dynamo.grading.text import last_boxed  # noqa: E402
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
    "Wait, that is not right; let us recount the cases with {a} and {b}.",
    "There are {s} ways to choose the first element, so we divide by {b}.",
    "\\[ f({a}) = {a}^2 - {b} = {d}. \\]",
    "Note that {a} is odd and {b} is even, so the parity argument works.",
]
# Final-answer phrasings (weights): boxed in several styles, no box, several boxes (an intermediate result
# of the problem's solution boxed too), a box that does not parse.
ENDINGS = [
    ("Therefore, the final answer is $\\boxed{{{x}}}$.", 0.15),
    ("So the answer is \\boxed{{{x}}}.", 0.17),
    ("The final answer is $\\boxed{{{x}}}$. I hope it is correct.", 0.1),
    ("**Final Answer**\n\\[\n\\boxed{{{x}}}\n\\]", 0.2),
    ("Putting everything together, we get $\\boxed{{{x}}}$", 0.13),
    ("So we conclude that the answer is \\boxed{{{x}}} as computed.", 0.1),
    ("Thus the answer is ${x}$.", 0.06),  # no box
    ("So there are $\\boxed{{{y}}}$ cases. {more} Combining the cases, the answer is \\boxed{{{x}}}.", 0.06),
    ("The answer is $\\boxed{{{bad}}}$.", 0.03),  # a box that does not parse
]
UNPARSABLE = ["{x} =", "{x} +", "?", "\\frac{{}}{{}}"]
# Warm-up pairs for both sides: generic answer shapes (not benchmark data), as the workers use at start-up.
WARM_PAIRS = [(f"The answer is $\\boxed{{{a}}}$.", gold) for a in WARMUP_ANSWERS for gold in ("7", a)]


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def reasoning(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(2, 12)):
        a, b = rng.randint(1, 999), rng.randint(1, 99)
        parts.append(rng.choice(STEPS).format(a=a, b=b, ab=a * b, s=a + b, d=a * a - b))
    return " ".join(parts)


def near_miss(gold: str, rng: random.Random) -> str | None:
    """The gold with one digit changed (an arithmetic slip): same shape, different value."""
    digits = [i for i, ch in enumerate(gold) if ch.isdigit()]
    if not digits:
        return None
    i = rng.choice(digits)
    return gold[:i] + str((int(gold[i]) + rng.randint(1, 9)) % 10) + gold[i + 1 :]


def equivalent(gold: str) -> str | None:
    """The same value written differently, where a model would plausibly write another form."""
    g = gold.strip()
    if re.fullmatch(r"\d{4,}", g):  # 12345 -> 12{,}345
        return f"{int(g):,}".replace(",", "{,}")
    if m := re.fullmatch(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}", g):  # \frac{a}{b} -> a/b
        return f"{m[1]}{m[2]}/{m[3]}"
    if re.fullmatch(r"-?\d*\.\d+", g):  # 0.5 -> \frac{1}{2}
        f = Fraction(g)
        return f"{'-' if f < 0 else ''}\\frac{{{abs(f.numerator)}}}{{{f.denominator}}}"
    if m := re.fullmatch(r"[a-z]\s*=\s*(.+)", g):  # x=5 -> 5
        return m[1]
    if m := re.fullmatch(r"(\d+)\^\\circ", g):  # 90^\circ -> 90
        return m[1]
    return None


def build_pairs(golds: list[str], samples: int, rng: random.Random) -> list[tuple[str, str]]:
    """`samples` distinct responses per gold answer (see the module docstring)."""
    pairs = []
    for gold in golds:
        others = [g for g in golds if g.strip() != gold.strip()]
        candidates = [(gold, 0.45)]
        if alt := equivalent(gold):
            candidates.append((alt, 0.15))
        candidates.append((near_miss(gold, rng) or rng.choice(others), 0.25))
        candidates.append((rng.choice(others), 0.15))
        answers, weights = zip(*candidates)
        endings, ending_weights = zip(*ENDINGS)
        intermediates = [rng.randint(2, 500) for _ in range(2)]
        for _ in range(samples):
            x = rng.choices(answers, weights)[0]
            ending = rng.choices(endings, ending_weights)[0]
            bad = rng.choice(UNPARSABLE).format(x=x)
            final = ending.format(x=x, y=rng.choice(intermediates), more=reasoning(rng), bad=bad)
            pairs.append((reasoning(rng) + "\n\n" + final, gold))
    return pairs


def time_grade_many(responses: list[str], golds: list[str], workers: int) -> dict:
    """One timed `grade_many` over the whole set on a fresh pool (caches empty, workers warm)."""
    shutdown()  # fresh pool, empty parent cache
    t0 = time.perf_counter()
    grade_many([r for r, _ in WARM_PAIRS], [g for _, g in WARM_PAIRS], workers=workers)
    pool_start_s = time.perf_counter() - t0
    before = grading_stats()
    pids = [w.proc.pid for w in _get_pool().workers]
    cpu0 = time.process_time() + sum(map(_proc_cpu_seconds, pids))
    t0 = time.perf_counter()
    verdicts = grade_many(responses, golds, workers=workers)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() + sum(map(_proc_cpu_seconds, pids)) - cpu0
    stats = {k: v - before.get(k, 0) for k, v in grading_stats().items()}
    shutdown()
    return {"verdicts": verdicts, "seconds": seconds, "cpu": cpu, "pool_start_s": pool_start_s, "stats": stats}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "benchmarks")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="problems per file (default: all)")
    parser.add_argument(
        "--workers",
        default=None,
        help="comma-separated worker counts to time grade_many with (default: 1 and one per core, at most 8)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # math-verify warns on every timeout
    worker_counts = sorted({int(w) for w in (args.workers or f"1,{default_workers()}").split(",")})

    rng = random.Random(args.seed)
    pairs: list[tuple[str, str]] = []
    sources = {}
    for name, file in (("math500", "math500.json"), ("aime24", "aime2024.json")):
        records = load_benchmark(name, args.data_dir / file)[: args.limit]
        pairs += build_pairs([r["answers"][0] for r in records], args.samples, rng)
        sources[name] = len(records)
    responses = [r for r, _ in pairs]
    golds = [g for _, g in pairs]
    assert len(set(responses)) == len(responses), "responses must be distinct texts"

    for response, gold in WARM_PAIRS:  # imports and ANTLR's first-parse costs
        reference_grade(response, gold)
    load_before = os.getloadavg()[0]

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    naive = [reference_grade(response, gold) for response, gold in pairs]
    naive_s = time.perf_counter() - t0
    naive_cpu = time.process_time() - cpu0
    fast = {w: time_grade_many(responses, golds, w) for w in worker_counts}

    mismatches = {w: [i for i, (a, b) in enumerate(zip(naive, r["verdicts"])) if a != b] for w, r in fast.items()}
    stats = fast[worker_counts[-1]]["stats"]
    figures = {
        "pairs": len(pairs),
        "problems": sources,
        "samples_per_problem": args.samples,
        "distinct_responses": len(set(responses)),
        "distinct_answer_gold_pairs": len({(last_boxed(r), g) for r, g in pairs}),
        "correct_fraction": round(sum(naive) / len(naive), 4),
        "naive_s": round(naive_s, 3),
        "naive_cpu_s": round(naive_cpu, 3),
        "naive_pairs_per_s": round(len(pairs) / naive_s, 1),
        "grade_many": [
            {
                "workers": w,
                "seconds": round(run["seconds"], 3),
                "speedup": round(naive_s / run["seconds"], 2),
                "cpu_s": round(run["cpu"], 3),
                "cpu_speedup": round(naive_cpu / run["cpu"], 2) if run["cpu"] > 0 else None,
                "pool_start_s": round(run["pool_start_s"], 3),
                "identical_verdicts": not mismatches[w],
            }
            for w, run in fast.items()
        ],
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(),
        "exact_integer": stats.get("exact", 0),
        "graded_in_workers": stats.get("graded_in_workers", 0),
        "answer_fallbacks": stats.get("answer_fallbacks", 0),
        "failures": sum(stats.get(k, 0) for k in ("timeout", "killed", "error", "crash")),
    }
    print(f"{'':>22} {'seconds':>8} {'pairs/s':>8} {'speed-up':>9} {'CPU s':>7} {'CPU speed-up':>13}")
    print(f"{'naive loop':>22} {naive_s:8.2f} {len(pairs) / naive_s:8.1f} {'':>9} {naive_cpu:7.2f}")
    for row in figures["grade_many"]:
        label = f"grade_many, {row['workers']} worker{'s' if row['workers'] > 1 else ''}"
        print(
            f"{label:>22} {row['seconds']:8.2f} {len(pairs) / row['seconds']:8.1f} {row['speedup']:8.2f}x"
            f" {row['cpu_s']:7.2f} {row['cpu_speedup']:12.2f}x"
        )
    load = figures["load_average_1min"]
    print(f"CPU s count the parent and the workers; load average {load} on {os.cpu_count()} cores")
    for w, bad in mismatches.items():
        for i in bad[:5]:
            print(f"MISMATCH ({w} workers) naive={naive[i]}: gold {golds[i]!r} response {responses[i][-120:]!r}")
    print(json.dumps(figures))
    assert not any(mismatches.values()), "verdicts differ from the naive loop"
    return 0


if __name__ == "__main__":
    sys.exit(main())
