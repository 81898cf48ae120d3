"""`dynamo verify`: every score file, scores table and provenance record under the given paths,
checked by `dynamo.evaluation.verify` (see there for what each check compares).

    dynamo verify runs/embedded results/ [--regrade]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dynamo.errors import UserError
from dynamo.evaluation.verify import check_provenance, check_score_file, check_scores_table
from dynamo.reporting.scores import load_scores


def verify_paths(paths: list[Path], *, regrade: bool = False) -> tuple[list[str], dict[str, int]]:
    """Every problem under `paths` (directories are searched) and counts of what was checked."""
    counts = {
        "score_files": 0,
        "scores_tables": 0,
        "rows_unchecked": 0,
        "provenance_files": 0,
        "inputs_unchecked": 0,
    }
    problems: list[str] = []
    for root in paths:
        if not root.exists():
            raise UserError(f"{root}: no such file or directory")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if path.name == "scores.json" and path.parent.parent.name == "eval":
                counts["score_files"] += 1
                problems += check_score_file(path, regrade=regrade)
            elif path.suffix == ".csv" and path.name.startswith("scores"):
                counts["scores_tables"] += 1
                found, unchecked = check_scores_table(load_scores(path), path)
                problems += found
                counts["rows_unchecked"] += unchecked
            elif path.name.endswith(".provenance.json"):
                counts["provenance_files"] += 1
                found, unchecked = check_provenance(path)
                problems += found
                counts["inputs_unchecked"] += unchecked
    return problems, counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", type=Path,
        help="run directories, results/, or single files (default: runs/ and results/, where they exist)",
    )  # fmt: skip
    parser.add_argument(
        "--regrade", action="store_true", help="also grade every stored response again and compare verdicts"
    )


def run(args: argparse.Namespace) -> int:
    paths = args.paths or [p for p in (Path("runs"), Path("results")) if p.exists()]
    if not paths:
        raise UserError("nothing to verify: no runs/ or results/ here (name the directories or files)")
    problems, counts = verify_paths(paths, regrade=args.regrade)
    for problem in problems:
        print(f"DIFFERENCE {problem}")
    absent = [
        f"{counts['rows_unchecked']} scores rows without their run directory" * bool(counts["rows_unchecked"]),
        f"{counts['inputs_unchecked']} absent provenance inputs" * bool(counts["inputs_unchecked"]),
    ]
    absent_text = " and ".join(a for a in absent if a)
    print(
        f"[dynamo verify] {counts['score_files']} score files, {counts['scores_tables']} scores tables, "
        f"{counts['provenance_files']} provenance records checked"
        + (f" ({absent_text} not checked)" if absent_text else "")
        + (f": {len(problems)} difference(s)" if problems else ": no differences")
    )
    return 1 if problems else 0
