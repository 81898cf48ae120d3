"""`dynamo grade`: grade a JSONL of {"response", "answer"} lines without any model.

    dynamo grade --input responses.jsonl --out graded.jsonl [--workers N] [--timeout S]

`answer` may be a string or a list of acceptable answers (`answers` and `gold` are accepted as
its name too). The output repeats every input line with "correct", "extracted" and "failure"
added; a one-line summary is printed, then the same figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dynamo.grading import DEFAULT_TIMEOUT, grade_details
from dynamo.io import write_text_atomic

ANSWER_KEYS = ("answer", "answers", "gold")


def read_items(path: Path) -> list[dict]:
    items = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SystemExit(f"{path}: not a UTF-8 text file (binary or damaged?)") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise SystemExit(f"{path}, line {lineno}: invalid JSON ({err.msg})") from None
        if not isinstance(item, dict) or "response" not in item:
            raise SystemExit(f"{path}, line {lineno}, field 'response': missing")
        if not any(k in item for k in ANSWER_KEYS):
            raise SystemExit(f"{path}, line {lineno}, field 'answer': missing")
        items.append(item)
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="JSONL with response and answer per line")
    parser.add_argument("--out", required=True, type=Path, help="graded JSONL to write")
    parser.add_argument("--workers", type=int, default=None, help="grading processes (default: cores, <= 8)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="hard seconds per response")


def run(args: argparse.Namespace) -> int:
    items = read_items(args.input)
    golds = [next(item[k] for k in ANSWER_KEYS if k in item) for item in items]
    results = grade_details(
        [item["response"] for item in items], golds, workers=args.workers, timeout=args.timeout
    )
    lines = []
    for item, result in zip(items, results):
        graded = {**item, "correct": result.correct, "extracted": result.extracted, "failure": result.failure}
        lines.append(json.dumps(graded) + "\n")
    write_text_atomic(args.out, "".join(lines))

    failures: dict[str, int] = {}
    for result in results:
        if result.failure:
            failures[result.failure] = failures.get(result.failure, 0) + 1
    n_correct = sum(r.correct for r in results)
    summary = {
        "graded": len(results),
        "correct": n_correct,
        "accuracy": n_correct / len(results) if results else 0.0,
        "grading_failures": sum(failures.values()),
        "failures_by_kind": failures,
        "out": str(args.out),
    }
    print(
        f"graded {summary['graded']} responses: {n_correct} correct ({100 * summary['accuracy']:.1f}%), "
        f"{summary['grading_failures']} grading failures {failures or ''}".rstrip()
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="dynamo grade")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
