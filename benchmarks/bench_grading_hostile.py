"""Grading throughput on hostile model output against a normal mix, side by side in one run.

    python benchmarks/bench_grading_hostile.py [--size 200] [--workers 2] [--seed 0]

Both mixes hold `--size` distinct responses (so no verdict is served from a cache) graded with
`dynamo.grading.grade_details` on a fresh pool of `--workers` processes, warmed up first on generic
answer shapes. The normal mix is short step-by-step text ending in a boxed answer (correct about
half the time). The hostile mix is what a policy can drift into or an attacker can send:

- redundant nested braces around a correct or wrong answer, \\boxed{{{...{7}...}}} at depth 15 to
  5,000 (before normalisation, depth 15 alone ran into math-verify's 5 s timeout);
- answers in fullwidth digits (U+FF10..U+FF19) and mathematical italic letters;
- long sums, towers of powers, unclosed display math, code-looking strings (graded incorrect,
  within the time bound).

Reported per mix: responses/s, seconds (each kind graded as one batch on the same warm pool, and
its time per kind), the fraction graded correct among the responses that
are correct by construction (redundant braces / fullwidth around the gold), failures (timeouts,
kills), and the slowest single grade is bounded by the grader's time budget. The last line is a
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

from dynamo.grading import grade_details, grading_stats, shutdown  # noqa: E402
from dynamo.grading.engine import WARMUP_ANSWERS  # noqa: E402

FULLWIDTH = str.maketrans("0123456789", "".join(chr(0xFF10 + d) for d in range(10)))


def normal_mix(size: int, rng: random.Random) -> list[tuple[str, str, bool | None, str]]:
    """(response, gold, correct by construction or None if unknown): integers, fractions (also
    written a/b) and surds, so that most grades need the workers, not the parent's integer path."""
    items = []
    for i in range(size):
        a, b = rng.randint(2, 999), rng.randint(2, 97)
        right = rng.random() < 0.5
        kind = i % 3
        if kind == 0:
            gold, answer = str(a * b), str(a * b if right else a * b + rng.randint(1, 9))
        elif kind == 1:
            gold = f"\\frac{{{a}}}{{{b}}}"
            answer = rng.choice([gold, f"{a}/{b}"]) if right else f"\\frac{{{a + 1}}}{{{b}}}"
        else:
            gold = f"{b}\\sqrt{{{a}}}"
            answer = gold if right else f"{b + 1}\\sqrt{{{a}}}"
        steps = " ".join(
            f"Step {j}: we compute ${a} \\cdot {b + j}$ and simplify." for j in range(rng.randint(2, 8))
        )
        ending = rng.choice(["So the answer is $\\boxed{{{x}}}$.", "**Final Answer**\n\\[\n\\boxed{{{x}}}\n\\]"])
        items.append((f"Problem {i}. {steps}\n\n" + ending.format(x=answer), gold, right, "normal"))
    return items


def hostile_mix(size: int, rng: random.Random) -> list[tuple[str, str, bool | None, str]]:
    """(response, gold, correct by construction or None, kind)."""
    items: list[tuple[str, str, bool | None, str]] = []
    kinds = ["braces", "braces", "braces", "fullwidth", "italic", "long_sum", "tower", "unclosed", "code"]
    for i in range(size):
        kind = kinds[i % len(kinds)]
        gold = str(rng.randint(1, 10**6))
        if kind == "braces":
            depth = rng.choice([15, 100, 1000, 5000])
            right = rng.random() < 0.7
            answer = gold if right else str(int(gold) + 1)
            items.append(
                (f"({i}) The answer is \\boxed{{" + "{" * depth + answer + "}" * depth + "}", gold, right, kind)
            )
        elif kind == "fullwidth":
            items.append((f"({i}) So the result is \\boxed{{{gold.translate(FULLWIDTH)}}}.", gold, True, kind))
        elif kind == "italic":  # mathematical italic x = <gold>: NFKC gives "x = <gold>"
            items.append((f"({i}) We find \\boxed{{\U0001d465 = {gold}}}", gold, None, kind))
        elif kind == "long_sum":
            items.append(
                (f"({i}) \\boxed{{" + "+".join(["1"] * rng.randint(2000, 20000)) + "}", gold, False, kind)
            )
        elif kind == "tower":
            items.append(
                (f"({i}) The answer is \\boxed{{9^{{9^{{9^{{{rng.randint(2, 9)}}}}}}}}}", gold, False, kind)
            )
        elif kind == "unclosed":
            items.append((f"({i}) $$" + "\\boxed{1" * rng.randint(1000, 6000), gold, False, kind))
        else:
            items.append((f"({i}) \\boxed{{__import__('os').system('true {i}')}}", gold, False, kind))
    return items


def time_mix(items: list[tuple[str, str, bool | None, str]], workers: int) -> dict:
    """Grade each kind of the mix as one batch on the same warm pool; figures overall and per kind."""
    shutdown()  # fresh pool and empty caches, then warm up on generic shapes (not the mix)
    warm = [f"The answer is $\\boxed{{{a}}}$." for a in WARMUP_ANSWERS]
    grade_details(warm, ["7"] * len(warm), workers=workers)
    before = grading_stats()
    per_kind, results = {}, {}
    for kind in dict.fromkeys(k for *_, k in items):
        batch = [(n, item) for n, item in enumerate(items) if item[3] == kind]
        kind_before = grading_stats()
        start = time.perf_counter()
        graded = grade_details([it[0] for _, it in batch], [it[1] for _, it in batch], workers=workers)
        seconds = time.perf_counter() - start
        kind_stats = {k: v - kind_before.get(k, 0) for k, v in grading_stats().items()}
        results.update({n: g for (n, _), g in zip(batch, graded)})
        per_kind[kind] = {
            "responses": len(batch),
            "seconds": round(seconds, 3),
            "timeouts": kind_stats.get("timeout", 0) + kind_stats.get("killed", 0),
        }
    seconds = sum(k["seconds"] for k in per_kind.values())
    stats = {k: v - before.get(k, 0) for k, v in grading_stats().items()}
    known = [(results[n].correct, want) for n, (_, _, want, _) in enumerate(items) if want is not None]
    should_pass = [got for got, want in known if want]
    should_fail = [got for got, want in known if not want]
    return {
        "responses": len(items),
        "seconds": round(seconds, 3),
        "responses_per_s": round(len(items) / seconds, 1),
        "correct_when_correct": round(sum(should_pass) / len(should_pass), 4) if should_pass else None,
        "correct_when_wrong": round(sum(should_fail) / len(should_fail), 4) if should_fail else None,
        "failures": sum(stats.get(k, 0) for k in ("timeout", "killed", "error", "crash")),
        "timeouts": stats.get("timeout", 0) + stats.get("killed", 0),
        "per_kind": per_kind,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200, help="responses per mix")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    rng = random.Random(args.seed)
    mixes = {"normal": normal_mix(args.size, rng), "hostile": hostile_mix(args.size, rng)}
    load_before = os.getloadavg()[0]
    figures = {name: time_mix(items, args.workers) for name, items in mixes.items()}
    shutdown()
    for kind, f in figures["hostile"]["per_kind"].items():
        print(
            f"  hostile/{kind:<10} {f['responses']:4d} responses {f['seconds']:8.2f} s  timeouts {f['timeouts']}"
        )
    header = ["responses", "seconds", "resp/s", "right->correct", "wrong->correct", "timeouts"]
    print(f"{'mix':>8} " + " ".join(f"{h:>15}" for h in header))
    for name, f in figures.items():
        print(
            f"{name:>8} {f['responses']:15d} {f['seconds']:15.2f} {f['responses_per_s']:15.1f} "
            f"{f['correct_when_correct']!s:>15} {f['correct_when_wrong']!s:>15} {f['timeouts']:15d}"
        )
    ratio = figures["hostile"]["responses_per_s"] / figures["normal"]["responses_per_s"]
    print(
        f"hostile / normal throughput: {ratio:.2f}; {args.workers} workers; load average {load_before:.2f} -> "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    print(json.dumps({"workers": args.workers, "hostile_over_normal": round(ratio, 3), **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
