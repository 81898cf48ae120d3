"""Hostile but correct answers: redundant nested braces and Unicode compatibility forms are
normalised before math-verify, so they grade correct, and fast; ordinary LaTeX is untouched."""

from __future__ import annotations

import time

import pytest

from dynamo.grading import grade_details
from dynamo.grading.text import MAX_GRADED_CHARS, normalize_response


def nested(depth: int, inner: str = "7") -> str:
    return "\\boxed{" + "{" * depth + inner + "}" * depth + "}"


@pytest.mark.parametrize("depth", [15, 100, 5000])
def test_redundant_braces_grade_correct_within_the_time_bound(depth):
    start = time.monotonic()
    result = grade_details([nested(depth), "The answer is " + nested(depth, "8")], ["7", "7"])
    elapsed = time.monotonic() - start
    assert [r.correct for r in result] == [True, False]
    assert all(r.failure is None for r in result)
    assert elapsed < 5.0 + 60.0  # 5 s per grade, plus one-time worker start-up on a loaded machine


def test_fullwidth_digits_match_their_ascii_gold():
    results = grade_details(
        ["\\boxed{\uff14\uff12}", "The answer is \uff14\uff12.", "\\boxed{\uff14\uff13}"], ["42"] * 3
    )
    assert [r.correct for r in results] == [True, True, False]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\\boxed{{{7}}}", "\\boxed{7}"),
        ("\\frac{{1}}{{2}}", "\\frac{1}{2}"),
        ("{{a}b}", "{{a}b}"),  # the inner group is not the whole content: kept
        ("\\{{a}\\}", "\\{{a}\\}"),  # escaped braces are text, not a group around {a}
        ("{{x\\}}", "{{x\\}}"),  # unbalanced once escapes are read: nothing is dropped
        ("\uff14\uff12", "42"),
        ("\U0001d465 + 1", "x + 1"),  # mathematical italic x
        ("10\u2076", "10\u2076"),  # superscript six keeps its meaning (NFKC would give "106")
        ("\u00bd", "\u00bd"),  # vulgar fraction one half: kept
        ("\\sqrt{2} + \\pi", "\\sqrt{2} + \\pi"),
    ],
)
def test_normalize_response(text, expected):
    assert normalize_response(text) == expected
    assert normalize_response(expected) == expected  # idempotent


def test_length_cap_keeps_the_tail():
    text = "x" * (3 * MAX_GRADED_CHARS) + "\\boxed{5}"
    assert normalize_response(text).endswith("\\boxed{5}")
    assert len(normalize_response(text)) == MAX_GRADED_CHARS


def test_normalisation_is_linear_on_deep_nesting():
    depth = MAX_GRADED_CHARS // 2 - 20
    start = time.perf_counter()
    assert normalize_response(nested(depth)) == "\\boxed{7}"
    assert time.perf_counter() - start < 2.0  # about 0.1 s; a backtracking regex would not finish
