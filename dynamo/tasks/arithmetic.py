"""The embedded task: seeded, verifiable integer arithmetic at graded difficulty levels.

The CPU experiment needs a task that a ~0.5 M-parameter character-level model can partly
solve after a short warm start, so that RL has headroom: some prompts always solved, some
never, many in between. Problems are short expressions ("12+7*3"), answers are plain
integer strings, and the model answers in the "\\boxed{}" convention of the real math
benchmarks, so the same grader, generation and evaluation code serve both.

Levels (each a few "forms" with operand ranges; all answers are non-negative integers):

    1  one-digit sums                      3+4, 2+7+5
    2  two-digit +/- one-digit             47+8, 52-6
    3  two-digit sums/differences; 1x1     47+38, 83-29, 7*8
    4  two-digit x one-digit products      23*7
    5  three one-digit operands            3+4*5, 6*7-8, 9-2+4
    6  two-digit products; mixed two-digit 23*45, 12*7+34, (12+7)*3

Files written by `dynamo make-task --out DIR`:
- DIR/train.jsonl: the RL prompt pool (unique problems, level mix `--level-weights`);
- DIR/sft.jsonl: warm-start examples from the same mix, drawn with replacement;
- DIR/arith-easy.jsonl (levels 1, 5), arith-medium.jsonl (2, 3), arith-hard.jsonl (4, 6):
  held-out benchmarks, uniform over their levels, ordered by answer length (see SPLITS);
- DIR/arith-id.jsonl: held-out problems with the pool's level mix (in-distribution);
  The pool, the SFT file and the held-out splits share no problem text: as with a real
  base model and a real RL prompt set, the warm start has not seen the RL prompts, so the
  warm-started model's pool accuracy is an accuracy on unseen problems, like the splits'.
- DIR/manifest.json: seed, counts per file and level, level definitions, template.

Every record is `{"id", "problem", "answer", "level"}`, the real benchmarks' shape.
The same seed and arguments give byte-identical files.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamo.io import write_text_atomic

# The prompt template of the embedded experiment: "12+7*3=" -> "\boxed{33}". As short as
# possible, because the tokenizer is character-level and every prompt character costs a
# position in every SFT step and rollout (this one keeps sequences ~20% shorter than
# "Q: {problem}\nA: "). The SFT warm start and the RL trainer must both use exactly this.
EMBEDDED_TEMPLATE = "{problem}="

FORMAT_VERSION = 1
# Difficulty splits. Levels number the generator's forms, not their difficulty for the model:
# a character-level model writes the answer digit by digit, so what makes a problem hard is
# mainly how many digits it must get right. Splits therefore group levels by mean answer length
# (digits): 5 (1.5) and 1 (1.6) easy, 2 (2.0) and 3 (2.2) medium, 4 (2.9) and 6 (3.2) hard;
# tests/test_arithmetic.py checks that order, and the base model's Pass@1 in the shipped reference/
# results/table1.csv falls from easy to hard.
SPLITS: dict[str, tuple[int, ...]] = {"arith-easy": (1, 5), "arith-medium": (2, 3), "arith-hard": (4, 6)}
# Held-out problems with the training pool's level mix: where RL's gains on the pool should
# carry over when they are more than memorised answers.
IN_DISTRIBUTION = "arith-id"
ALL_SPLITS = (*SPLITS, IN_DISTRIBUTION)
# Share of each level in the pool and in the SFT file (normalised). Calibrated for RL that
# learns (docs/EMBEDDED_DEFAULT.md): after the default warm start the tiny model
# solves ~56 % of pool samples at temperature 1 (55.9 measured, 8 samples per problem). Levels 4
# and 6 (multi-digit products, ~5 % and ~0 % solved when trained on) are left out of the pool
# and the SFT file: in the calibration sweep, GRPO on the mix with them (3,2,2,1,2,1) moved
# held-out Pass@1 by -0.8..+0.7 points (mean +0.1), on this mix by +0.8..+3.0 (3 seeds each). arith-hard
# (levels 4, 6) thus measures transfer to forms the model was never trained on.
DEFAULT_LEVEL_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 2.0, 0.0, 2.0, 0.0)
DEFAULT_POOL_SIZE = 1024
DEFAULT_EVAL_SIZE = 100
DEFAULT_SFT_SIZE = 20000


@dataclass(frozen=True)
class Form:
    """One expression shape: a format string over operands a, b, c and its exact value."""

    pattern: str
    ranges: tuple[tuple[int, int], ...]  # inclusive operand ranges, in order a, b, c
    value: Callable[..., int]

    def sample(self, rng: random.Random) -> tuple[str, int] | None:
        ops = [rng.randint(lo, hi) for lo, hi in self.ranges]
        v = self.value(*ops)
        if v < 0:  # keep answers non-negative: the model never has to emit a sign
            return None
        return self.pattern.format(**dict(zip("abc", ops))), v

    def problems(self) -> set[str]:
        """Every distinct text this form produces (at most ~65k; enumerated for the capacity check)."""
        grid = itertools.product(*(range(lo, hi + 1) for lo, hi in self.ranges))
        return {self.pattern.format(**dict(zip("abc", ops))) for ops in grid if self.value(*ops) >= 0}


@dataclass(frozen=True)
class Level:
    level: int
    description: str
    forms: tuple[Form, ...]

    def sample(self, rng: random.Random) -> tuple[str, int]:
        while True:
            out = rng.choice(self.forms).sample(rng)
            if out is not None:
                return out

    @functools.cached_property
    def capacity(self) -> int:
        """Number of distinct problems of this level."""
        return len(set().union(*(f.problems() for f in self.forms)))


D1 = (0, 9)  # one digit
D1P = (2, 9)  # one-digit factor (0 and 1 make products trivial)
D2 = (10, 99)  # two digits

LEVELS: dict[int, Level] = {
    lv.level: lv
    for lv in (
        Level(
            1,
            "one-digit sums a+b, a+b+c",
            (
                Form("{a}+{b}", (D1, D1), lambda a, b: a + b),
                Form("{a}+{b}+{c}", (D1, D1, D1), lambda a, b, c: a + b + c),
            ),
        ),
        Level(
            2,
            "two-digit plus/minus one-digit a+b, a-b",
            (Form("{a}+{b}", (D2, D1), lambda a, b: a + b), Form("{a}-{b}", (D2, D1), lambda a, b: a - b)),
        ),
        Level(
            3,
            "two-digit sums and differences a+b, a-b (a-b >= 0); one-digit products a*b",
            (
                Form("{a}+{b}", (D2, D2), lambda a, b: a + b),
                Form("{a}-{b}", (D2, D2), lambda a, b: a - b),
                Form("{a}*{b}", (D1P, D1P), lambda a, b: a * b),
            ),
        ),
        Level(
            4,
            "two-digit times one-digit products a*b, b*a",
            (Form("{a}*{b}", (D2, D1P), lambda a, b: a * b), Form("{a}*{b}", (D1P, D2), lambda a, b: a * b)),
        ),
        Level(
            5,
            "three one-digit operands with precedence: a+b*c, a*b+c, a*b-c, a-b+c, a+b-c",
            (
                Form("{a}+{b}*{c}", (D1, D1, D1), lambda a, b, c: a + b * c),
                Form("{a}*{b}+{c}", (D1, D1, D1), lambda a, b, c: a * b + c),
                Form("{a}*{b}-{c}", (D1, D1, D1), lambda a, b, c: a * b - c),
                Form("{a}-{b}+{c}", (D1, D1, D1), lambda a, b, c: a - b + c),
                Form("{a}+{b}-{c}", (D1, D1, D1), lambda a, b, c: a + b - c),
            ),
        ),
        Level(
            6,
            "two-digit products a*b; mixed a*b+c, (a+b)*c with two-digit operands",
            (
                Form("{a}*{b}", (D2, D2), lambda a, b: a * b),
                Form("{a}*{b}+{c}", (D2, D1P, D2), lambda a, b, c: a * b + c),
                Form("({a}+{b})*{c}", (D2, D1, D1P), lambda a, b, c: (a + b) * c),
            ),
        ),
    )
}


def level_definitions() -> dict[str, Any]:
    """JSON-safe description of the levels (for the manifest)."""
    return {
        str(lv.level): {
            "description": lv.description,
            "forms": [{"pattern": f.pattern, "ranges": [list(r) for r in f.ranges]} for f in lv.forms],
            "distinct_problems": lv.capacity,
        }
        for lv in LEVELS.values()
    }


def held_out_levels(level_weights: Sequence[float]) -> dict[str, dict[int, float]]:
    """Every held-out split -> {level: share}: the difficulty splits (uniform over their levels)
    and the in-distribution split (the pool's level mix)."""
    out = {name: {lv: 1.0 for lv in levels} for name, levels in SPLITS.items()}
    out[IN_DISTRIBUTION] = {lv: float(w) for lv, w in zip(LEVELS, level_weights) if w > 0}
    return out


def split_counts(total: int, weights: Sequence[float]) -> list[int]:
    """Integer counts proportional to `weights` summing to `total` (largest remainder, ties to lower index)."""
    s = float(sum(weights))
    raw = [total * w / s for w in weights]
    counts = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _unique_problems(
    rng: random.Random, level: int, n: int, taken: set[str], what: str, max_misses: int = 20000
) -> list[tuple[str, int]]:
    """`n` distinct problems of one level whose texts are not in `taken` (which is updated)."""
    out: list[tuple[str, int]] = []
    misses = 0
    while len(out) < n:
        text, value = LEVELS[level].sample(rng)
        if text in taken:
            misses += 1
            if misses > max_misses:
                raise ValueError(
                    f"level {level} ran out of distinct problems for {what} after {len(out)} of {n} "
                    f"({LEVELS[level].capacity} exist, {len(taken)} texts already used); "
                    "lower --pool-size/--eval-size or the level's weight"
                )
            continue
        misses = 0
        taken.add(text)
        out.append((text, value))
    return out


def _record(rid: str, text: str, value: int, level: int) -> dict[str, Any]:
    return {"id": rid, "problem": text, "answer": str(value), "level": level}


def generate_task(
    seed: int,
    pool_size: int = DEFAULT_POOL_SIZE,
    eval_size: int = DEFAULT_EVAL_SIZE,
    sft_size: int = DEFAULT_SFT_SIZE,
    level_weights: Sequence[float] = DEFAULT_LEVEL_WEIGHTS,
) -> dict[str, list[dict[str, Any]]]:
    """All files' records, keyed by file stem ("train", "sft", "arith-easy", ...). Pure and seeded."""
    validate_sizes(pool_size, eval_size, sft_size, level_weights)
    rng = random.Random(seed)
    taken: set[str] = set()
    files: dict[str, list[dict[str, Any]]] = {}
    # Held-out splits claim their texts first, so that nothing else can use them.
    for split, levels in held_out_levels(level_weights).items():
        records = []
        for level, n in zip(levels, split_counts(eval_size, [levels[lv] for lv in levels])):
            records += [(t, v, level) for t, v in _unique_problems(rng, level, n, taken, split)]
        rng.shuffle(records)
        files[split] = [_record(f"{split}-{i:04d}", t, v, lv) for i, (t, v, lv) in enumerate(records)]

    pool = []
    for level, n in zip(LEVELS, split_counts(pool_size, level_weights)):
        pool += [(t, v, level) for t, v in _unique_problems(rng, level, n, taken, "the training pool")]
    rng.shuffle(pool)
    files["train"] = [_record(f"arith-train-{i:05d}", t, v, lv) for i, (t, v, lv) in enumerate(pool)]

    # SFT examples: drawn with replacement (levels hold as few as ~1000 problems) from the
    # problems neither held out nor in the pool; validate_sizes() leaves a quarter of each level.
    sft = []
    for level, n in zip(LEVELS, split_counts(sft_size, level_weights)):
        while n > 0:
            text, value = LEVELS[level].sample(rng)
            if text not in taken:
                sft.append((text, value, level))
                n -= 1
    rng.shuffle(sft)
    files["sft"] = [_record(f"arith-sft-{i:05d}", t, v, lv) for i, (t, v, lv) in enumerate(sft)]
    return files


def validate_sizes(pool_size: int, eval_size: int, sft_size: int, level_weights: Sequence[float]) -> None:
    """Raise ValueError with a clear message for impossible or meaningless settings."""
    for name, v in (("pool_size", pool_size), ("eval_size", eval_size), ("sft_size", sft_size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if len(level_weights) != len(LEVELS):
        raise ValueError(
            f"level_weights needs {len(LEVELS)} values (levels 1..{len(LEVELS)}), got {len(level_weights)}"
        )
    if any(w < 0 for w in level_weights) or sum(level_weights) <= 0:
        raise ValueError(f"level_weights must be non-negative with a positive sum, got {list(level_weights)}")
    # Disjointness needs room: held-out problems plus the pool's share of a level must fit.
    need = {lv: 0 for lv in LEVELS}
    for levels in held_out_levels(level_weights).values():
        for lv, n in zip(levels, split_counts(eval_size, [levels[lv] for lv in levels])):
            need[lv] += n
    for lv, n in zip(LEVELS, split_counts(pool_size, level_weights)):
        need[lv] += n
    for lv, n in need.items():
        # At most 3/4 of a level: rejection sampling stays fast, and the SFT file keeps
        # problems that are not held out.
        if n > 3 * LEVELS[lv].capacity // 4:
            raise ValueError(
                f"level {lv} ({LEVELS[lv].description}) has {LEVELS[lv].capacity} distinct problems; "
                f"pool + held-out splits would need {n} of them. Lower --pool-size/--eval-size or its weight"
            )


def _jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_task(
    out: str | Path,
    seed: int,
    pool_size: int = DEFAULT_POOL_SIZE,
    eval_size: int = DEFAULT_EVAL_SIZE,
    sft_size: int = DEFAULT_SFT_SIZE,
    level_weights: Sequence[float] = DEFAULT_LEVEL_WEIGHTS,
) -> dict[str, Any]:
    """Generate and write all task files into `out`; returns the manifest."""
    files = generate_task(seed, pool_size, eval_size, sft_size, level_weights)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stem, records in files.items():
        write_text_atomic(out / f"{stem}.jsonl", _jsonl(records))
    manifest = {
        "task": "arithmetic",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "pool_size": pool_size,
        "eval_size": eval_size,
        "sft_size": sft_size,
        "level_weights": list(level_weights),
        "template": EMBEDDED_TEMPLATE,
        "splits": {name: sorted(levels) for name, levels in held_out_levels(level_weights).items()},
        "levels": level_definitions(),
        "files": {
            f"{stem}.jsonl": {
                "count": len(records),
                "per_level": {str(lv): sum(r["level"] == lv for r in records) for lv in LEVELS},
            }
            for stem, records in files.items()
        },
    }
    # Written last: its presence says the directory is complete.
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _weights(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed; same seed -> identical files")
    parser.add_argument(
        "--pool-size", type=int, default=DEFAULT_POOL_SIZE, help="RL prompt pool size (unique problems)"
    )
    parser.add_argument("--eval-size", type=int, default=DEFAULT_EVAL_SIZE, help="problems per held-out split")
    parser.add_argument(
        "--sft-size", type=int, default=DEFAULT_SFT_SIZE, help="warm-start examples (with replacement)"
    )
    parser.add_argument(
        "--level-weights",
        type=_weights,
        default=list(DEFAULT_LEVEL_WEIGHTS),
        help=f"share of levels 1..{len(LEVELS)} in the pool and SFT file, comma-separated "
        f"(default {','.join(str(w) for w in DEFAULT_LEVEL_WEIGHTS)})",
    )


def run(args: argparse.Namespace) -> int:
    try:
        manifest = write_task(
            args.out, args.seed, args.pool_size, args.eval_size, args.sft_size, args.level_weights
        )
    except ValueError as e:
        raise SystemExit(f"dynamo make-task: error: {e}") from None
    counts = ", ".join(f"{name} {info['count']}" for name, info in manifest["files"].items())
    print(f"wrote {args.out}: {counts}")
    return 0
