"""Answer grading with math-verify: safe for untrusted model output, bounded in time, fast.

    grade(response, gold) -> bool
    grade_many(responses, golds, workers=None, timeout=None) -> list[bool]
    grade_details(responses, golds, workers=None, timeout=None) -> list[GradeResult]
    failure_counts() / grading_stats() / reset_stats()      counters for reports
    shutdown()                                             stop the pool, drop cached verdicts

A response is correct when math-verify finds it equal to the gold answer wrapped in \\boxed{}
(several golds: any of them), with the prediction extracted by math-verify's LaTeX and plain
expression extraction -- exactly `dynamo.grading.engine.reference_grade`. Both sides are first
normalised (`text.normalize_response`: the last 100,000 characters, Unicode compatibility forms
such as fullwidth digits made plain, redundant nested braces "{{x}}" dropped), so a correct answer
written in fullwidth digits or wrapped in thousands of braces is graded correct, and fast.

Safety: model output is only ever handed to math-verify's regexes and LaTeX parser, never to
eval/sympify by this package, and only inside worker processes (`dynamo.grading.pool`); the
parent itself only runs bounded, linear-time string scans (`dynamo.grading.text`). Each
grade is bounded: math-verify's own signal timeouts (5 s per parse/compare) run in the workers'
main threads, and a worker that makes no progress for `timeout` seconds is killed and replaced.
Timeouts, exceptions and crashed workers give "incorrect" plus a counted failure, never an
exception in the caller. Workers cap their address space (DYNAMO_GRADER_MEMORY_MB, default 4096).

Speed: model responses are distinct texts whose final answers repeat, so the parent keys work on
the answer, not the text. `text.boxed_answer` finds the single \\boxed{B} of a response when
math-verify provably extracts exactly that box from it (the argument is in `dynamo.grading.text`);
then a plain integer B against plain-integer golds is decided here (math-verify compares two
Integers by ==), and any other B is graded once per distinct (B, golds) as the short response
"\\boxed{B}" (`engine.Grader.grade_answer`, which hands back a box that does not parse: those
responses are then graded in full). Responses without such a box are graded in full, once per
distinct (response, golds). Responses that cannot contain an answer are answered here; results
are cached in this process; the rest goes to a persistent pool (started lazily on first use,
reused, shut down at exit) whose workers memoise parsing and verification (see `engine`). The
verdicts are those of a plain math-verify call on the full responses.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from dataclasses import dataclass

from dynamo.grading.pool import Result, WorkerPool
from dynamo.grading.text import boxed_answer, digest, may_extract, normalize_response, plain_integer

__all__ = [
    "DEFAULT_TIMEOUT",
    "GradeResult",
    "failure_counts",
    "grade",
    "grade_details",
    "grade_many",
    "grading_stats",
    "reset_stats",
    "shutdown",
]

# Hard bound (seconds without progress) on one response's grade. math-verify's own soft bounds
# (5 s per parse and per comparison) normally end a slow grade long before this.
DEFAULT_TIMEOUT = 30.0
FAILURE_KINDS = ("timeout", "killed", "error", "crash")
_CACHE_SIZE = 200_000
# What a worker grades: (response, golds) or (boxed answer, golds, "answer"); see `_worker`.
Job = tuple[str, tuple[str, ...]] | tuple[str, tuple[str, ...], str]


@dataclass(frozen=True)
class GradeResult:
    """One response's grade: verdict, the answer string math-verify extracted, failure kind."""

    correct: bool
    extracted: str | None = None
    failure: str | None = None  # None | "timeout" | "killed" | "error" | "crash"


_pool: WorkerPool | None = None
_cache: dict[bytes, GradeResult] = {}  # insertion-ordered; trimmed FIFO when full
_stats: dict[str, int] = {}


def _count(key: str, n: int = 1) -> None:
    _stats[key] = _stats.get(key, 0) + n


def _get_pool() -> WorkerPool:
    global _pool
    if _pool is None or _pool.pid != os.getpid():
        memory_mb = int(os.environ.get("DYNAMO_GRADER_MEMORY_MB", "4096"))
        _pool = WorkerPool(memory_mb=memory_mb)
    return _pool


def shutdown() -> None:
    """Stop the worker pool and drop cached verdicts; the next grade starts afresh."""
    global _pool
    _cache.clear()
    if _pool is not None:
        _pool.close()
        _pool = None


atexit.register(shutdown)


def default_workers() -> int:
    """Worker processes used when `workers=None`: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def _as_text(response: object) -> str | None:
    """The normalised text to grade (`text.normalize_response`), None when it is not text."""
    if isinstance(response, str):
        return normalize_response(response)
    if isinstance(response, (bytes, bytearray)):
        return normalize_response(bytes(response).decode("utf-8", errors="replace"))
    if response is None:
        return ""
    return None  # not text at all: graded incorrect, counted as an error


def _as_golds(gold: object) -> tuple[str, ...]:
    if isinstance(gold, str):
        return (normalize_response(gold),)
    if isinstance(gold, (list, tuple)):
        return tuple(normalize_response(str(g)) for g in gold)
    return (normalize_response(str(gold)),)


def _integer_verdict(answer: str, golds: tuple[str, ...]) -> GradeResult | None:
    """The verdict when the boxed answer and every gold are plain integers (see `text`)."""
    value = plain_integer(answer)
    if value is None:
        return None
    gold_values = [plain_integer(g) for g in golds]
    if None in gold_values:
        return None
    return GradeResult(value in gold_values, answer)


def _grade_in_workers(jobs: dict[bytes, Job], workers: int | None, timeout: float | None) -> dict[bytes, Result]:
    """Results of distinct jobs (by key) from the pool, counting failures."""
    keys = sorted(jobs, key=lambda k: jobs[k][1])  # same gold -> same worker chunk
    pool = _get_pool()
    before = dict(pool.stats)
    numbered = [(n, *jobs[k]) for n, k in enumerate(keys)]
    raw = pool.run(numbered, workers or default_workers(), timeout or DEFAULT_TIMEOUT)
    for kind in ("workers_started", "worker_restarts", *FAILURE_KINDS):
        _count(kind, pool.stats.get(kind, 0) - before.get(kind, 0))
    _count("graded_in_workers", len(keys))
    return {k: raw[n] for n, k in enumerate(keys)}


def _remember(key: bytes, result: GradeResult) -> None:
    if result.failure is None:  # a timeout may not repeat; don't make it permanent
        if len(_cache) >= _CACHE_SIZE:
            for old in list(_cache)[: _CACHE_SIZE // 10]:
                del _cache[old]
        _cache[key] = result


def grade_details(
    responses: Sequence[object],
    golds: Sequence[str | Sequence[str]],
    workers: int | None = None,
    timeout: float | None = None,
) -> list[GradeResult]:
    """Grade each response against its gold answer(s); never raises on bad model output."""
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers")
    results: list[GradeResult | None] = [None] * len(responses)
    texts: list[str] = [""] * len(responses)
    gold_ts: list[tuple[str, ...]] = [()] * len(responses)
    # One job per distinct (boxed answer, golds) or, without a usable box, (response, golds).
    todo: dict[bytes, list[int]] = {}
    jobs: dict[bytes, Job] = {}

    def add(i: int, key: bytes, job: Job) -> None:
        cached = _cache.get(key)
        if cached is not None:
            results[i] = cached
            _count("cache_hits")
        else:
            todo.setdefault(key, []).append(i)
            jobs.setdefault(key, job)

    for i, (response, gold) in enumerate(zip(responses, golds)):
        text = _as_text(response)
        gold_t = gold_ts[i] = _as_golds(gold)
        if text is None:
            results[i] = GradeResult(False, None, "error")
            _count("error")
            continue
        texts[i] = text
        if not may_extract(text):
            results[i] = GradeResult(False)
            _count("trivial")
            continue
        answer = boxed_answer(text)
        if answer is None:
            add(i, b"R" + digest(text, *gold_t), (text, gold_t))
            continue
        exact = _integer_verdict(answer, gold_t)
        if exact is not None:
            results[i] = exact
            _count("exact")
            continue
        add(i, b"A" + digest(answer, *gold_t), (answer, gold_t, "answer"))

    while todo:  # a second round only for boxed answers that do not parse
        graded = _grade_in_workers(jobs, workers, timeout)
        pending, todo, jobs = todo, {}, {}
        for key, (correct, extracted, failure) in graded.items():
            if correct is None:  # the shortcut does not apply: grade these responses in full
                _count("answer_fallbacks")
                for i in pending[key]:
                    add(i, b"R" + digest(texts[i], *gold_ts[i]), (texts[i], gold_ts[i]))
                continue
            result = GradeResult(bool(correct), extracted, failure)
            _remember(key, result)
            for i in pending[key]:
                results[i] = result
    _count("graded", len(responses))
    return results  # type: ignore[return-value]


def grade_many(
    responses: Sequence[object],
    golds: Sequence[str | Sequence[str]],
    workers: int | None = None,
    timeout: float | None = None,
) -> list[bool]:
    """Batched verdicts; `golds[i]` is a string or a list of acceptable answers."""
    return [r.correct for r in grade_details(responses, golds, workers=workers, timeout=timeout)]


def grade(response: str, gold: str | Sequence[str], timeout: float | None = None) -> bool:
    """True if math-verify finds `response`'s final answer equal to `gold` (or one of several)."""
    return grade_details([response], [gold], workers=1, timeout=timeout)[0].correct


def failure_counts() -> dict[str, int]:
    """Failures since start (or `reset_stats`) by kind, plus their total."""
    counts = {kind: _stats.get(kind, 0) for kind in FAILURE_KINDS}
    counts["total"] = sum(counts.values())
    return counts


def grading_stats() -> dict[str, int]:
    """All counters: graded, cache_hits, trivial, graded_in_workers, workers_started, failures..."""
    return dict(_stats)


def reset_stats() -> None:
    _stats.clear()
