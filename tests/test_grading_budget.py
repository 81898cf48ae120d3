"""One time budget per graded response: parse + verify together stay within math-verify's 5 s."""

from __future__ import annotations

import logging
import time

import pytest

from dynamo.grading import grade_details
from dynamo.grading.engine import SOFT_TIMEOUT_S, WARMUP_ANSWERS, Grader

NESTED = "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}"
LONG_SUM = "\\boxed{" + "+".join(["1"] * 20000) + "}"


def test_default_budget_is_math_verifys_five_seconds():
    assert SOFT_TIMEOUT_S == 5 and Grader().soft_timeout == 5


@pytest.mark.parametrize("text", [NESTED, LONG_SUM], ids=["nested_braces", "long_sum"])
def test_worst_adversarial_response_returns_within_six_seconds(text):
    # A symbolic answer (no integer shortcut) makes the worker start now: time the grade only.
    assert grade_details(["warm \\boxed{x+1}"], ["1+x"], workers=1)[0].correct
    start = time.monotonic()
    [result] = grade_details([text], ["12345"], workers=1, timeout=30)
    elapsed = time.monotonic() - start
    assert not result.correct and result.failure == "timeout"
    assert elapsed < 6.0, f"{elapsed:.1f} s"


def test_budget_covers_every_phase_in_process():
    """A small budget ends the whole grade, whichever phase it is in; normal grades are unaffected."""
    logging.disable(logging.CRITICAL)
    try:
        warm = Grader(soft_timeout=None)  # ANTLR's first parse takes seconds: pay it outside the budget
        for answer in WARMUP_ANSWERS:
            warm.grade(f"\\boxed{{{answer}}}", (answer,))
        grader = Grader(soft_timeout=1.0)
        start = time.monotonic()
        assert grader.grade(NESTED, ("12345",)) == (False, None, "timeout")
        assert grader.grade_answer(NESTED[7:-1], ("12345",)) == (False, None, "timeout")
        # Two 1 s budgets; unbounded, NESTED alone takes over 10 s. The slack absorbs a loaded machine.
        assert time.monotonic() - start < 8.0
        assert grader.grade("so \\boxed{12345}", ("12345",))[0]
        assert grader.grade("so \\boxed{\\frac{1}{2}}", ("0.5",))[0]
    finally:
        logging.disable(logging.NOTSET)
