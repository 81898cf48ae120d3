"""Untrusted model output: code-looking strings, pathological math and junk all grade incorrect,
within the time bound, without executing anything; a hung worker is killed and replaced."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dynamo import grading
from dynamo.grading import grade_details
from dynamo.grading.pool import WorkerPool

GOLD = "12345"


def adversarial(sentinel: Path) -> dict[str, object]:
    cmd = f"__import__('os').system('touch {sentinel}')"
    junk = b"\xff\xfe\x80 \\boxed{\xc3\x28} \xed\xa0\x80 4".decode("utf-8", "surrogateescape")
    return {
        "code": cmd,
        "code_boxed": f"\\boxed{{{cmd}}}",
        "code_eval": f'The answer is ${{eval("{cmd}")}}$',
        "code_lambda": f"Answer: (lambda: {cmd})()",
        "code_text": f"\\boxed{{\\text{{{cmd}}}}}",
        "code_exec": f"final answer is exec(compile('{cmd}', 'x', 'exec')) = 1",
        "tower": "The answer is 9^9^9^9",
        "tower_boxed": "\\boxed{9^{9^{9^{9}}}}",
        "huge_power": "\\boxed{10^{10^{10}}}",
        "factorial": "\\boxed{100000!}",
        "nested_braces": "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
        "long_sum": "\\boxed{" + "+".join(["1"] * 20000) + "}",
        "long_sum_plain": "answer: " + "+".join(["1"] * 20000),
        "unclosed_display": "$$" + "\\boxed{1" * 6000,
        "empty": "",
        "whitespace": "   \n\t ",
        "surrogates": junk,
        "lone_surrogates": "\ud800\\boxed{\udfff}",
        "nul_bytes": "\x00\\boxed{\x00}\x00",
        "raw_bytes": b"\xff\xfe\\boxed{\x80}",
    }


def test_adversarial_outputs_grade_incorrect_in_bounded_time_and_execute_nothing(tmp_path):
    sentinel = tmp_path / "SENTINEL"
    cases = adversarial(sentinel)
    timeout = 10.0
    start = time.monotonic()
    results = grade_details(list(cases.values()), [GOLD] * len(cases), timeout=timeout)
    elapsed = time.monotonic() - start
    assert [name for name, r in zip(cases, results) if r.correct] == []
    assert not sentinel.exists(), "a grade executed model output"
    # Bound: every grade ends within `timeout` (soft math-verify timeouts end most after 5 s),
    # plus worker start-up; a generous multiple keeps the check robust on a loaded machine.
    assert elapsed < len(cases) * timeout
    slow = {name: r.failure for name, r in zip(cases, results) if r.failure}
    assert set(slow.values()) <= {"timeout", "killed", "error"}


def test_grading_still_works_after_adversarial_batch():
    assert grade_details(["so \\boxed{12345}"], [GOLD])[0].correct


def test_hung_worker_is_killed_and_replaced():
    # Without math-verify's soft timeouts a quadratic regex scan runs for about a minute; the
    # hard bound must kill the worker after `timeout` seconds and carry on with a fresh one.
    pool = WorkerPool(soft_timeout=0)
    try:
        hang = "$$" + "\\boxed{1" * 30000
        tasks = [(0, "warm up \\boxed{1}", ("1",)), (1, hang, ("1",)), (2, "then \\boxed{2}", ("2",))]
        results = pool.run(tasks[:1], workers=1, timeout=60)  # start-up outside the timed part
        start = time.monotonic()
        results = pool.run(tasks[1:], workers=1, timeout=2.0)
        elapsed = time.monotonic() - start
        assert results[1] == (False, None, "killed")
        assert results[2][0] is True  # graded by the replacement worker
        assert pool.stats["killed"] == 1 and pool.stats["worker_restarts"] == 1
        assert elapsed < 2.0 + 120  # kill at ~2 s, then the replacement's start-up
    finally:
        pool.close()


def test_hang_inside_a_chunk_fails_only_the_hung_task():
    # Results come back in batches, so a kill does not say which task of a chunk hung: the pool
    # re-runs the unanswered ones one by one, and only the culprit fails.
    pool = WorkerPool(soft_timeout=0)
    try:
        pool.run([(0, "warm up \\boxed{1}", ("1",))], workers=1, timeout=60)
        hang = "$$" + "\\boxed{1" * 30000
        tasks = [(i, f"so \\boxed{{{i}}}", (str(i),)) for i in range(16)]
        tasks[9] = (9, hang, ("1",))  # chunks of 4: the hang is second in the third chunk
        results = pool.run(tasks, workers=1, timeout=2.0)
        assert results[9] == (False, None, "killed")
        assert all(results[i] == (True, str(i), None) for i in range(16) if i != 9)
        assert pool.stats["killed"] == 1
    finally:
        pool.close()


def test_dead_worker_is_replaced_without_raising():
    pool = WorkerPool()
    try:
        pool.run([(0, "\\boxed{1}", ("1",))], workers=1, timeout=60)
        pool.workers[0].proc.kill()  # simulate a segfault / OOM kill
        results = pool.run([(0, "\\boxed{1}", ("1",)), (1, "\\boxed{2}", ("2",))], workers=1, timeout=60)
        # The first task is re-run by the replacement (or, if the worker had taken it, fails as a crash).
        assert results[0] in [(True, "1", None), (False, None, "crash")]
        assert results[1] == (True, "2", None)
        assert pool.stats["worker_restarts"] == 1
    finally:
        pool.close()


def test_worker_left_busy_by_an_interrupted_run_is_replaced():
    pool = WorkerPool()
    try:
        pool.run([(0, "\\boxed{1}", ("1",))], workers=1, timeout=60)
        stale = pool.workers[0]
        stale.chunk = [(7, "\\boxed{5}", ("5",))]  # as if Ctrl-C hit while this chunk was out
        results = pool.run([(0, "\\boxed{2}", ("2",))], workers=1, timeout=60)
        assert results == {0: (True, "2", None)} and pool.workers[0] is not stale
    finally:
        pool.close()


@pytest.fixture(autouse=True, scope="module")
def _shutdown_pool():
    yield
    grading.shutdown()
