"""Grading: real gold answers grade correct, wrong ones incorrect, verdicts equal plain math-verify."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dynamo import grading
from dynamo.grading import GradeResult, failure_counts, grade, grade_details, grade_many, grading_stats
from dynamo.tasks import load_benchmark

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "benchmarks"
FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"real benchmark files not found at {SHARED} (fresh clone without ../shared)"
)
REAL = [("math500", "math500.json"), ("aime24", "aime2024.json"), ("amc23", "amc_2022_2023.json")]
SENTENCES = [
    "Working through the cases, the final answer is $\\boxed{{{}}}$.",
    "So we conclude that the answer is \\boxed{{{}}}. Done.",
    "Therefore $\\boxed{{{}}}$ is our result.",
]


def boxed_in_sentence(answer: str, i: int) -> str:
    return "Let me solve this step by step. " + SENTENCES[i % len(SENTENCES)].format(answer)


# ----------------------------------------------------------------------------- real files
@needs_shared
@pytest.mark.parametrize("name, file", REAL)
def test_every_real_gold_boxed_in_a_sentence_grades_correct(name, file):
    records = load_benchmark(name, SHARED / file)
    responses = [boxed_in_sentence(r["answers"][0], i) for i, r in enumerate(records)]
    verdicts = grade_many(responses, [r["answers"] for r in records])
    wrong = [(r["id"], r["answers"]) for r, v in zip(records, verdicts) if not v]
    assert not wrong, f"{len(wrong)} golds graded incorrect: {wrong[:5]}"


@needs_shared
def test_shuffled_distinct_golds_grade_incorrect():
    records = load_benchmark("math500", SHARED / "math500.json")
    golds = [r["answers"][0] for r in records]
    shuffled = golds[:]
    random.Random(0).shuffle(shuffled)
    pairs = [
        (boxed_in_sentence(s, i), g) for i, (s, g) in enumerate(zip(shuffled, golds)) if s.strip() != g.strip()
    ]
    assert len(pairs) > 450
    verdicts = grade_many([p for p, _ in pairs], [g for _, g in pairs])
    false_positives = [(p[-60:], g) for (p, g), v in zip(pairs, verdicts) if v]
    assert not false_positives, false_positives[:5]


def test_fixture_golds_grade_correct():
    for name, file in [
        ("aime25", "aime25.jsonl"),
        ("minerva", "minerva.json"),
        ("olympiadbench", "olympiadbench.json"),
    ]:
        records = load_benchmark(name, FIXTURES / file)
        for answer_index in range(2):  # OlympiadBench lists: every listed answer is accepted
            responses = [
                boxed_in_sentence(r["answers"][min(answer_index, len(r["answers"]) - 1)], 0) for r in records
            ]
            assert all(grade_many(responses, [r["answers"] for r in records])), name


# ----------------------------------------------------------------------------- same verdicts as math-verify
def mixed_pairs(golds: list[str], rng: random.Random, n: int) -> list[tuple[str, str]]:
    """Responses in many phrasings (boxed, 'answer is', bare expressions) with right and wrong answers."""
    formats = [
        "Thus the final answer is $\\boxed{{{}}}$.",
        "\\boxed{{{}}}",
        "The answer is ${}$.",
        "Answer: {}",
        "so we get {} in the end",
        "Final answer: \\({}\\)",
    ]
    tricky = [
        "025",
        "25",
        "0.5",
        "\\frac{1}{2}",
        "50\\%",
        "x = 5",
        "5",
        "(1, 2)",
        "[1, 2]",
        "\\{1, 2\\}",
        "1, 2",
        "-\\infty",
    ]
    pairs = []
    for _ in range(n):
        gold = rng.choice(golds)
        answer = rng.choice([gold, gold, rng.choice(golds), rng.choice(tricky)])
        filler = rng.choice(
            ["", "We have $x^2 = 4$ so $x = 2$. ", "Compute 3 * 4 = 12. ", "Step 1: $\\frac{a}{b}$. "]
        )
        pairs.append((filler + rng.choice(formats).format(answer), gold))
    return pairs


@pytest.fixture(scope="module")
def verdict_pairs():
    golds = ["025", "25", "0.5", "\\frac{1}{2}", "50\\%", "x = 5", "5", "(1, 2)", "\\{1, 2\\}", "3\\sqrt{13}"]
    if SHARED.is_dir():
        golds += [r["answers"][0] for r in load_benchmark("math500", SHARED / "math500.json")[:60]]
    return mixed_pairs(golds, random.Random(1), 300)


def test_pool_verdicts_equal_plain_math_verify(verdict_pairs):
    from dynamo.grading.engine import reference_grade

    expected = [reference_grade(r, g) for r, g in verdict_pairs]
    assert 0 < sum(expected) < len(expected)
    assert grade_many([r for r, _ in verdict_pairs], [g for _, g in verdict_pairs]) == expected


def test_in_process_grader_equals_plain_math_verify(verdict_pairs):
    from dynamo.grading.engine import Grader, reference_grade

    grader = Grader()
    for response, gold in verdict_pairs[:150]:
        assert grader.grade(response, (gold,))[0] == reference_grade(response, gold), (response, gold)


def test_multiple_golds_any_match():
    from dynamo.grading.engine import reference_grade

    response = "The roots are found, answer $\\boxed{-2}$."
    assert grade(response, ["2", "-2"]) and reference_grade(response, ["2", "-2"])
    assert not grade(response, ["2", "3"])
    assert grade_many([response, response], [["-2"], "-2"]) == [True, True]


# ----------------------------------------------------------------------------- API behaviour
def test_basic_verdicts_and_extracted_answer():
    results = grade_details(
        ["so it is \\boxed{\\frac{1}{2}}", "I think 0.5", "it is \\boxed{3}", "no idea", ""],
        ["0.5", "1/2", "4", "1", "1"],
    )
    assert [r.correct for r in results] == [True, True, False, False, False]
    assert results[0].extracted == "\\frac{1}{2}" and results[2].extracted == "3"
    assert results[3] == GradeResult(False, None, None)


def test_non_text_responses_never_raise():
    results = grade_details([b"\\boxed{7}", None, 7, bytearray(b"\xff\xfe \\boxed{7}")], ["7", "7", "7", "7"])
    assert [r.correct for r in results] == [True, False, False, True]
    assert results[2].failure == "error"


def test_cache_and_trivial_paths_skip_the_pool():
    grade_many(["warm \\boxed{5}"], ["5"])  # make sure the pool is up
    before = grading_stats()
    answer = f"\\frac{{{random.randint(10**6, 10**7)}}}{{7}}"  # a fresh answer: no cached verdict
    responses = [f"so \\boxed{{{answer}}}", f"other words, same $\\boxed{{{answer}}}$", "nothing to extract here"]
    assert grade_many(responses, [answer] * 3) == [True, True, False]
    assert grade(f"and again \\boxed{{{answer}}}!", answer)
    assert grade("an integer: \\boxed{12}", "12")
    after = grading_stats()
    assert after.get("graded_in_workers", 0) - before.get("graded_in_workers", 0) == 1  # same boxed answer
    assert after.get("cache_hits", 0) - before.get("cache_hits", 0) == 1
    assert after.get("trivial", 0) - before.get("trivial", 0) == 1
    assert after.get("exact", 0) - before.get("exact", 0) == 1


def test_length_mismatch_is_a_programming_error():
    with pytest.raises(ValueError):
        grade_many(["a", "b"], ["1"])


def test_failure_counts_shape():
    counts = failure_counts()
    assert set(counts) == {"timeout", "killed", "error", "crash", "total"}
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")


def test_parent_process_does_not_import_math_verify():
    import subprocess
    import sys

    code = (
        "import sys; from dynamo.grading import grade; assert grade('\\\\boxed{2}', '2'); "
        "print('sympy' in sys.modules, 'math_verify' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "False"]


def teardown_module() -> None:
    grading.shutdown()
