"""`dynamo grade`: a JSONL of {response, answer} lines graded without a model."""

from __future__ import annotations

import json

import pytest

from dynamo import grading
from dynamo.cli import main as dynamo_main


def test_grade_cli(tmp_path, capsys):
    items = [
        {"response": "so \\boxed{42}", "answer": "42", "id": "a"},
        {"response": "The answer is $\\frac{1}{2}$.", "answer": ["0.5", "1/2"]},
        {"response": "no idea", "gold": "7"},
        {"response": "\\boxed{3}", "answers": ["4"]},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(i) + "\n" for i in items) + "\n")
    out = tmp_path / "sub" / "graded.jsonl"
    assert dynamo_main(["grade", "--input", str(src), "--out", str(out), "--workers", "1"]) == 0
    graded = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["correct"] for g in graded] == [True, True, False, False]
    assert graded[0]["id"] == "a" and graded[0]["extracted"] == "42" and graded[0]["failure"] is None
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("graded 4 responses: 2 correct (50.0%), 0 grading failures")
    summary = json.loads(printed[-1])
    assert summary["graded"] == 4 and summary["correct"] == 2 and summary["grading_failures"] == 0


@pytest.mark.parametrize(
    "line, message", [("{not json", "line 1: invalid JSON"), ('{"answer": "1"}', "line 1, field 'response'")]
)
def test_grade_cli_bad_input_names_line(tmp_path, line, message):
    src = tmp_path / "bad.jsonl"
    src.write_text(line + "\n")
    with pytest.raises(SystemExit, match=message):
        dynamo_main(["grade", "--input", str(src), "--out", str(tmp_path / "o.jsonl")])


def teardown_module() -> None:
    grading.shutdown()
