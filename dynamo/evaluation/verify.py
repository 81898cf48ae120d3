"""Checks that every score follows from the samples it claims to come from (`dynamo verify`,
whose command walks directories in `dynamo.reporting.verify`).

A per-run score file (`<run>/eval/<benchmark>/scores.json`, written by `dynamo evaluate`) is
checked against itself and its samples (`check_score_file`):

- internal consistency: Pass@k given for k = 1..n (n samples per problem), each in [0, 1],
  non-decreasing in k (so Pass@1 <= Pass@k), pass_at_1 equal to Pass@k at k = 1;
- the samples file next to it: its sha256 equals the recorded `samples_sha256`; it holds exactly
  num_problems x samples_per_problem lines, samples 0..n-1 of each problem; Pass@k recomputed
  from the stored verdicts ("correct") equals the recorded values;
- the model: where `model` is a local directory, its identity (config.json and weight files,
  `dynamo.fingerprint.model_identity`) still hashes to the recorded `model_sha256`;
- with `--regrade`, every response is graded again and the verdicts compared with the stored ones.

Score files written before they recorded `samples_sha256` (or without their samples.jsonl) get the
consistency checks only; a recorded hash with its samples file gone is a difference.

A long scores file (results/scores*.csv, written by `dynamo report --write-scores`) is checked
row by row against the score files it was collected from (`check_scores_table`): the file's
recorded `scores_sha256`, Pass@k, problem and sample counts. Rows whose run directory is absent
(a scores file copied away from its runs) cannot be checked and are counted as such.

A provenance record (`*.provenance.json`) is checked against the files it lists (inputs and
outputs; absent inputs, such as the run files of a shipped copy, are counted as not checked).

The scores and table steps of `dynamo report` run the same checks and refuse to go on (one line
naming the file) instead of recomputing: a mismatch means a file was edited or mixed up, and
which side is right is for a person to decide.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from dynamo.errors import UserError, read_json_file
from dynamo.evaluation.metrics import mean_pass_at_k
from dynamo.provenance_info import file_sha256

TOLERANCE = 1e-9  # recomputed Pass@k may differ from the recorded value in its last bits only


@functools.lru_cache(maxsize=64)
def model_sha256(model: str) -> str | None:
    """sha256 of a local model directory's identity (as `dynamo evaluate` records it), None if absent."""
    from dynamo.fingerprint import model_identity

    if not Path(model).is_dir():
        return None
    return hashlib.sha256(json.dumps(model_identity(model), sort_keys=True).encode()).hexdigest()


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0, abs_tol=TOLERANCE)


def _curve_problems(scores: dict[str, Any]) -> list[str]:
    """Internal consistency of one score dict: Pass@k for k = 1..n, in [0, 1], non-decreasing."""
    try:
        n = int(scores["samples_per_problem"])
        curve = {int(k): float(v) for k, v in scores["pass_at_k"].items()}
        pass_at_1 = float(scores["pass_at_1"])
        int(scores["num_problems"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return [f"missing or malformed field ({type(err).__name__}: {err})"]
    if sorted(curve) != list(range(1, n + 1)):
        return [f"Pass@k given for k = {sorted(curve)}, expected 1..{n}"]
    problems = [f"Pass@{k} = {v} outside [0, 1]" for k, v in curve.items() if not 0.0 <= v <= 1.0]
    problems += [
        f"Pass@{k} = {curve[k]} is below Pass@{k - 1} = {curve[k - 1]} (Pass@k cannot fall as k grows)"
        for k in range(2, n + 1)
        if curve[k] < curve[k - 1] - TOLERANCE
    ]
    if not _close(pass_at_1, curve[1]):
        problems.append(f"pass_at_1 = {pass_at_1} differs from Pass@1 = {curve[1]}")
    return problems


def _read_verdicts(
    path: Path, keep_records: bool
) -> tuple[dict[str, dict[int, bool]], list[dict[str, Any]], list[str]]:
    """{problem id: {sample index: correct}}, the sample records (if kept: they hold the responses),
    and problems found reading them."""
    verdicts: dict[str, dict[int, bool]] = {}
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{path}, line {lineno}: not UTF-8")
                continue
            try:
                rec = json.loads(line)
                pid, sample, correct = str(rec["id"]), int(rec["sample"]), rec["correct"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                problems.append(f"{path}, line {lineno}: not a sample record")
                continue
            if not isinstance(correct, bool):
                problems.append(f"{path}, line {lineno}: 'correct' is not true/false")
                continue
            if sample in verdicts.setdefault(pid, {}):
                problems.append(f"{path}, line {lineno}: problem {pid!r} sample {sample} appears twice")
            verdicts[pid][sample] = correct
            if keep_records:
                records.append(rec)
    return verdicts, records, problems


def check_score_file(path: str | Path, *, regrade: bool = False) -> list[str]:
    """Every difference between a scores.json and what its samples say (empty: verified)."""
    path = Path(path)
    try:
        scores = read_json_file(path)
    except UserError as err:  # names the file: "damaged JSON (...)", "file not found"
        return [str(err)]
    if not isinstance(scores, dict):
        return [f"{path}: not a score object"]
    problems = [f"{path}: {p}" for p in _curve_problems(scores)]
    if problems:
        return problems
    if scores.get("model_sha256") and model_sha256(str(scores.get("model"))) not in (None, scores["model_sha256"]):
        problems.append(f"{path}: the model at {scores['model']} has changed since these scores were computed")
    samples = path.with_name("samples.jsonl")
    recorded = scores.get("samples_sha256")
    if not samples.exists():
        return [f"{path}: records samples_sha256 but {samples} is missing"] if recorded else []
    if recorded is not None and file_sha256(samples) != recorded:
        problems.append(f"{path}: {samples.name} has changed since the scores were computed (sha256 differs)")
    n, num_problems = int(scores["samples_per_problem"]), int(scores["num_problems"])
    verdicts, records, read_problems = _read_verdicts(samples, keep_records=regrade)
    problems += read_problems
    if len(verdicts) != num_problems:
        problems.append(f"{path}: num_problems is {num_problems}, {samples.name} holds {len(verdicts)} problems")
    uneven = [pid for pid, v in verdicts.items() if sorted(v) != list(range(n))]
    if uneven:
        problems.append(f"{path}: problem {uneven[0]!r} does not have samples 0..{n - 1} ({len(uneven)} such)")
    if problems:
        return problems
    correct = [[v[i] for i in range(n)] for v in verdicts.values()]
    recomputed = mean_pass_at_k(correct)
    for k, value in recomputed.items():
        if not _close(value, float(scores["pass_at_k"][str(k)])):
            problems.append(
                f"{path}: Pass@{k} is {scores['pass_at_k'][str(k)]}, the samples' verdicts give {value:.10g}"
            )
            break
    if regrade:
        problems += _regrade(samples, records)
    return problems


def _regrade(samples: Path, records: list[dict[str, Any]]) -> list[str]:
    from dynamo.grading import grade_details

    results = grade_details([r.get("response") for r in records], [r.get("gold") or "" for r in records])
    changed = [(r, g) for r, g in zip(records, results) if g.failure is None and g.correct != r["correct"]]
    if not changed:
        return []
    rec, grade = changed[0]
    return [
        f"{samples}: {len(changed)} stored verdict(s) differ from a fresh grade, e.g. problem {rec['id']!r} "
        f"sample {rec['sample']}: stored {rec['correct']}, graded {grade.correct}"
    ]


def check_scores_table(df: Any, source: str | Path) -> tuple[list[str], int]:
    """Differences between a long scores table and the score files its rows came from, and the
    number of rows that could not be checked (their run directory is absent)."""
    problems: list[str] = []
    unchecked = 0
    if "run_dir" not in df.columns:
        return [f"{source}: no run_dir column (not written by `dynamo report --write-scores`?)"], 0
    for (run_dir, bench), rows in df.groupby(["run_dir", "benchmark"], sort=False):
        path = Path(str(run_dir)) / "eval" / str(bench) / "scores.json"
        if not Path(str(run_dir)).is_dir():
            unchecked += len(rows)
            continue
        if not path.exists():
            problems.append(f"{source}: rows of {run_dir} {bench} name {path}, which does not exist")
            continue
        if "scores_sha256" in rows.columns:
            recorded = set(rows["scores_sha256"].dropna())
            if recorded and recorded != {file_sha256(path)}:
                problems.append(f"{source}: {path} has changed since the scores file was written (sha256 differs)")
                continue
        scores = read_json_file(path)
        for row in rows.itertuples():
            expected = scores.get("pass_at_k", {}).get(str(int(row.k)))
            if expected is None or not _close(float(row.value), float(expected)):
                problems.append(
                    f"{source}: row {row.method} seed {row.seed} {bench} Pass@{row.k} = {row.value}, "
                    f"but {path} says {expected}"
                )
                break
            for column in ("num_problems", "samples_per_problem"):
                if column in rows.columns and int(getattr(row, column)) != int(scores[column]):
                    problems.append(
                        f"{source}: row {row.method} seed {row.seed} {bench} {column} differs from {path}"
                    )
                    break
    return problems, unchecked


def check_provenance(path: str | Path) -> tuple[list[str], int]:
    """Listed files whose sha256 differs (or outputs that are gone), and the number of inputs
    that could not be checked because they are absent (e.g. run files of a shipped reference copy).

    Paths are relative to the directory the pipeline ran in: the working directory, or the
    directory above the record's (a copy such as reference/results/ keeps that layout)."""
    path = Path(path)
    record = read_json_file(path)
    problems, unchecked = [], 0
    for kind in ("inputs", "outputs"):
        for name, digest in (record.get(kind) or {}).items():
            target = next((p for p in (Path(name), path.parent.parent / name) if p.is_file()), None)
            if target is None:
                if kind == "outputs":
                    problems.append(f"{path}: output {name} is missing")
                else:
                    unchecked += 1
            elif file_sha256(target) != digest:
                problems.append(f"{path}: {kind[:-1]} {name} differs from the recorded sha256")
    return problems, unchecked


def require_verified(problems: list[str]) -> None:
    """Raise UserError with the first problem (one line naming the file), mentioning the rest."""
    if problems:
        more = f" (and {len(problems) - 1} more; `dynamo verify` lists them)" if len(problems) > 1 else ""
        raise UserError(problems[0] + more)
