"""The fast paths: last-box extraction, the boxed-answer shortcut and the plain-integer verdict
give exactly what a plain math-verify call gives on the full response."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
from pathlib import Path

import pytest

from dynamo import grading
from dynamo.grading import grade_details, grading_stats
from dynamo.grading.text import boxed_answer, last_boxed, normalize_response, plain_integer

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "benchmarks"


# ----------------------------------------------------------------------------- last_boxed
@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{42}.", "42"),
        ("nested $\\boxed{\\frac{1}{\\sqrt{2}}}$ done", "\\frac{1}{\\sqrt{2}}"),
        ("deep \\boxed{{{a}{b}}c} tail }", "{{a}{b}}c"),
        ("first \\boxed{1}, then \\boxed{2} and text", "2"),
        ("\\boxed{1} and \\fbox{x+1}", "x+1"),
        ("\\fbox{3} then \\boxed{4}", "4"),
        ("only \\fbox{ 7 }", " 7 "),
        ("unbalanced \\boxed{\\frac{1}{2}", None),
        ("earlier \\boxed{1} but last box unclosed \\boxed{2", None),
        ("\\boxed{}", ""),
        ("no box here, $x = 1$", None),
        ("\\boxed 5 has no brace", None),
        ("escaped braces count raw: \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


# ----------------------------------------------------------------------------- boxed_answer
@pytest.mark.parametrize(
    "text, expected",
    [
        ("So the answer is \\boxed{ 42 }.", "42"),
        ("$\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
        ("**Final Answer**\n\\[\n\\boxed{(-\\infty, 2]}\n\\]", "(-\\infty, 2]"),
        ("costs \\boxed{\\$18.90}", "\\$18.90"),
        # everything below falls back to the full parse
        ("\\boxed{1} and \\boxed{2}", None),  # several boxes
        ("\\fbox{1} \\boxed{2}", None),  # \fbox counts as a box for math-verify's normaliser
        ("\\boxed {2}", None),  # math-verify's regexes need "\boxed{"
        ("\\boxed{ }", None),  # empty
        ("\\boxed{\\frac{1}{2}", None),  # unclosed
        ("The final answer is $\\boxed{5}$. I hope it is correct.", None),  # a "final answer ... is" match
        ("$\\boxed{50}$%", None),  # percent suffix on the environment
        ("$\\boxed{50}$ percent", None),
        ("$\\boxed{a$b}$", None),  # an environment could close inside the box
        ("\\[\\boxed{1 \\] 2}\\]", None),
        ("\\( \\boxed{1 \\) 2} \\)", None),
        (" [ \\boxed{[0, 1] \\cup [2, 3]} ] ", None),
    ],
)
def test_boxed_answer(text, expected):
    assert boxed_answer(text) == expected


def test_plain_integer():
    assert [plain_integer(s) for s in ["42", " -7 ", "007", "-0", "9" * 50]] == [42, -7, 7, 0, int("9" * 50)]
    assert [plain_integer(s) for s in ["9" * 51, "4.0", "+4", "1,000", "٣", "", "4 2"]] == [None] * 7


def test_plain_integers_parse_to_themselves():
    """What the integer path relies on: "\\boxed{n}" parses to [Integer(n), n] and verify is ==."""
    from math_verify import parse, verify
    from sympy import Integer

    rng = random.Random(3)
    shapes = ["0", "-0", "00", "007", "-007", "1" + "0" * 49, "-" + "9" * 50]
    shapes += [str(rng.randint(-(10**k), 10**k)) for k in range(1, 50) for _ in range(2)]
    for s in shapes:
        assert parse(f"\\boxed{{{s}}}") == [Integer(int(s)), s], s
    for a, b in [("12345678901234567890", "12345678901234567891"), ("007", "7"), ("-0", "0"), ("5", "-5")]:
        assert verify(parse(f"\\boxed{{{a}}}"), parse(f"\\boxed{{{b}}}")) == (int(a) == int(b))


# ----------------------------------------------------------------------------- equivalence with math-verify
ANSWERS = [
    "42",
    "-7",
    "007",
    "0",
    "12345678901234567890",
    "0.5",
    "\\frac{1}{2}",
    "1/2",
    "\\dfrac{7}{2}",
    "50\\%",
    "x = 5",
    "(1, 2)",
    "[0, 1]",
    "(-\\infty, 2]",
    "\\{1, 2\\}",
    "3\\sqrt{13}",
    "\\text{Evelyn}",
    "\\$18.90",
    "1, 2, 3",
    "10^{6}",
    "\\pi",
    "6 - 5i",
    "90^\\circ",
    "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
    "52_8",
    "x^2+1",
    "\\left( 3, \\frac{\\pi}{2} \\right)",
    "42.0",
    "{42}",
    "5 \\text{ cm}",
    "12\\%",
    # unparsable, empty or hostile contents
    "x =",
    "3 +",
    "?",
    "\\frac{}{}",
    "",
    " ",
    "a$b",
    "2 \\] 3",
    "\\( 3",
    "}{",
    "\\boxed{4}",
    "\\fbox{2}",
    "final answer is 3",
    "percent",
]
GOLDS = [
    "42",
    "7",
    "-7",
    "0.5",
    "\\frac{1}{2}",
    "x = 5",
    "(1, 2)",
    "3\\sqrt{13}",
    "\\pi",
    "50",
    "12345678901234567890",
]
PREFIXES = [
    "",
    "So ",
    "Therefore, the answer is ",
    "The final answer is ",
    "Answer: ",
    "We get $x = 3$ and ",
    "$$ ",
    "\\[ ",
    "$",
    "\\( ",
    " [ ",
    "**Final Answer**\n\\[\n",
    "Compute 3 * 4 = 12. ",
    "It is 25% of ",
    "$\\frac{1}{2}$ then ",
    "the final answer, after checking, is ",
]
SUFFIXES = [
    "",
    ".",
    "$.",
    "$",
    " $$",
    " \\]",
    " \\)",
    " ] ",
    "$. I hope it is correct.",
    "$%",
    " percent",
    "\n\\]",
    ". So 7 is it",
    ", and $\\boxed{9}$",
    " and 5",
    " is 8",
    "}",
    " = 4$",
    "$ pct",
    ", or $3$",
]
BOXES = ["\\boxed{%s}", "\\boxed{%s}", "\\boxed{%s}", "\\boxed {%s}", "\\fbox{%s}", "\\boxed{%s", "\\boxed{ %s }"]
PIECES = [
    "$",
    "\\[",
    "\\]",
    "\\(",
    "\\)",
    " [",
    "] ",
    "{",
    "}",
    "%",
    " is ",
    "final answer",
    "\n",
    "\\boxed{",
    "3",
    ",",
]


def varied_responses(n: int, seed: int) -> list[tuple[str, str]]:
    """Boxed answers in many surroundings, some with random delimiters/keywords spliced in."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        text = rng.choice(PREFIXES) + rng.choice(BOXES) % rng.choice(ANSWERS) + rng.choice(SUFFIXES)
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 3)):
                i = rng.randint(0, len(text))
                text = text[:i] + rng.choice(PIECES) + text[i:]
        pairs.append((text, rng.choice(GOLDS)))
    return pairs


@pytest.fixture(scope="module")
def varied():
    return varied_responses(400, seed=7)


def test_shortcut_parses_like_the_full_response(varied):
    """Where the shortcut applies, math-verify's parse of the response is that of "\\boxed{B}";
    the set also holds responses whose last box is *not* what math-verify extracts."""
    from math_verify import parse
    from sympy import Integer

    from dynamo.grading.engine import Grader, boxed

    logging.disable(logging.CRITICAL)
    grader = Grader()
    applied = integers = last_box_differs = 0
    for response, _ in varied:
        full = parse(response)
        last = last_boxed(response)
        if last is not None and last.strip() and full != parse(boxed(last.strip())):
            last_box_differs += 1  # the conditions must turn these away
        answer = boxed_answer(response)
        if answer is None:
            continue
        value = plain_integer(answer)
        if value is not None:
            assert full == [Integer(value), answer], response
            integers += 1
        elif grader.grade_answer(answer, ("1",)) is not None:
            assert full == parse(boxed(answer)), response
            applied += 1
    assert applied > 40 and integers > 10 and last_box_differs > 20  # the generator exercises all cases


def test_grade_details_equal_plain_math_verify(varied):
    from dynamo.grading.engine import Grader, reference_grade

    logging.disable(logging.CRITICAL)
    responses = [r for r, _ in varied]
    golds = [g for _, g in varied]
    before = grading_stats()
    results = grade_details(responses, golds)
    after = grading_stats()
    expected = [reference_grade(r, g) for r, g in varied]
    assert [r.correct for r in results] == expected
    assert 0 < sum(expected) < len(expected)
    grader = Grader()  # the extracted answer is the one the full-response grade reports, too
    assert [r.extracted for r in results] == [
        grader.grade(normalize_response(r), (normalize_response(g),))[1] for r, g in varied
    ]
    for kind in ("exact", "answer_fallbacks"):
        assert after.get(kind, 0) > before.get(kind, 0), kind


def test_integer_path_needs_no_worker():
    before = grading_stats()
    results = grade_details(
        ["so \\boxed{007}", "so \\boxed{-0}", "it is \\boxed{41}", "\\boxed{12}"], ["7", "0", "42", ["11", "12"]]
    )
    after = grading_stats()
    assert [r.correct for r in results] == [True, True, False, True]
    assert [r.extracted for r in results] == ["007", "-0", "41", "12"]
    assert after.get("exact", 0) - before.get("exact", 0) == 4
    assert after.get("graded_in_workers", 0) == before.get("graded_in_workers", 0)


def test_unparsable_box_falls_back_to_the_full_response():
    from dynamo.grading.engine import reference_grade

    responses = ["We find $x = 4$. So the answer is $\\boxed{x =}$.", "Final: $\\boxed{\\frac{}{}}$ or 3"]
    golds = ["4", "3"]
    expected = [reference_grade(r, g) for r, g in zip(responses, golds)]
    assert [r.correct for r in grade_details(responses, golds)] == expected


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"real benchmark files not found at {SHARED}")
def test_benchmark_script_runs_with_identical_verdicts():
    script = REPO / "benchmarks" / "bench_grading.py"
    args = [sys.executable, str(script), "--limit", "4", "--samples", "8", "--workers", "1,2"]
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert [run["workers"] for run in figures["grade_many"]] == [1, 2]
    assert all(run["identical_verdicts"] for run in figures["grade_many"]) and figures["pairs"] == 8 * 8
    assert figures["distinct_responses"] == figures["pairs"]


def teardown_module() -> None:
    grading.shutdown()
