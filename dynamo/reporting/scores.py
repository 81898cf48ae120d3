"""Results as data: every run's scores in one long (tidy) table, and every run's training metrics.

    from dynamo.reporting import load_scores, load_metrics
    scores = load_scores("results/scores.csv")      # one row per (experiment, method, seed, benchmark, metric, k)
    metrics = load_metrics("runs/embedded")         # one row per (method, seed, step)

`collect_scores` builds the long table from the files the pipeline writes: each run's
`eval/<benchmark>/scores.json` (the scores) and `summary.json` (code commit and the run's cost,
key "cost"; a run without them, such as the untrained "base" row or a run of an older version,
gets NaN costs). The tables in results/ are derived from this file (dynamo.reporting.tables).

Every score file is verified first (`dynamo.evaluation.verify.check_score_file`: consistent
Pass@k, samples hash, Pass@k recomputed from the stored verdicts); a difference stops the step with
one line naming the file. Each row records the sha256 of its score file (`scores_sha256`), which
the table step and `dynamo verify` check the row against.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from dynamo.errors import read_json_file
from dynamo.evaluation.verify import check_score_file, require_verified
from dynamo.io import read_jsonl, write_text_atomic
from dynamo.provenance_info import file_sha256

METRIC = "pass_at_k"  # Pass@k for every k = 1..n in scores.json; Pass@1 is the row with k = 1
# summary.json["cost"] fields copied into scores.csv as cost_<field> (NaN where a run lacks them).
COST_FIELDS = ("prompts_seen", "responses_generated", "tokens_generated", "tokens_trained", "gpu_seconds")
ID_COLUMNS = ["experiment", "method", "seed", "benchmark", "variant", "metric", "k"]
SCORE_COLUMNS = [
    *ID_COLUMNS,
    "value",
    "num_problems",
    "samples_per_problem",
    "run_dir",
    "scores_sha256",
    "code_commit",
    *(f"cost_{f}" for f in COST_FIELDS),
    "cost_seconds_total",
]


def code_version() -> str:
    """The code that runs now: git commit if this is a checkout, else the package version + 'unknown'."""
    from dynamo.provenance_info import git_commit

    commit = git_commit()
    if commit != "unknown":
        return commit
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"dynamo-rlvr {version('dynamo-rlvr')}, commit unknown"
    except PackageNotFoundError:
        return "unknown"


def run_cost(summary: dict) -> dict[str, float]:
    """cost_* columns from a summary.json dict; NaN for every field the run did not record."""
    cost = summary.get("cost") or {}
    out = {f"cost_{f}": _number(cost.get(f)) for f in COST_FIELDS}
    seconds = cost.get("seconds") or {}
    if not isinstance(seconds, dict):  # a bare number is the total
        seconds = {"total": seconds}
    out["cost_seconds_total"] = _number(seconds.get("total"))
    for phase, value in sorted(seconds.items()):
        if phase != "total":
            out[f"cost_seconds_{phase}"] = _number(value)
    return out


def _number(x) -> float:
    try:
        return math.nan if x is None else float(x)
    except (TypeError, ValueError):
        return math.nan


def collect_scores(
    runs_root: str | Path,
    methods: list[str],
    seeds: list[int],
    benchmarks: list[str],
    *,
    experiment: str | None = None,
) -> pd.DataFrame:
    """The long table of every (method, seed, benchmark) score file below runs_root (all must exist)."""
    runs_root = Path(runs_root)
    experiment = experiment or runs_root.name
    fallback_commit = None
    rows = []
    for method in methods:
        for seed in seeds:
            run = runs_root / method / f"seed{seed}"
            summary_path = run / "summary.json"
            summary = read_json_file(summary_path) if summary_path.exists() else {}
            commit = summary.get("git_commit")
            if not commit or commit == "unknown":
                fallback_commit = fallback_commit or code_version()
                commit = fallback_commit
            cost = run_cost(summary)
            for bench in benchmarks:
                path = run / "eval" / bench / "scores.json"
                if not path.exists():
                    raise FileNotFoundError(f"missing score file {path} (has this run been evaluated?)")
                require_verified(check_score_file(path))
                s = read_json_file(path)
                digest = file_sha256(path)
                n = int(s["samples_per_problem"])
                for k, value in sorted(s["pass_at_k"].items(), key=lambda kv: int(kv[0])):
                    rows.append(
                        {
                            "experiment": experiment,
                            "method": method,
                            "seed": seed,
                            "benchmark": bench,
                            "variant": s.get("variant", bench),
                            "metric": METRIC,
                            "k": int(k),
                            "value": float(value),
                            "num_problems": s.get("num_problems", math.nan),
                            "samples_per_problem": n,
                            "run_dir": str(run),
                            "scores_sha256": digest,
                            "code_commit": commit,
                            **cost,
                        }
                    )
    df = pd.DataFrame(rows)
    extra = sorted(c for c in df.columns if c not in SCORE_COLUMNS)  # cost_seconds_<phase>
    return df.reindex(columns=[*SCORE_COLUMNS, *extra])


def write_scores(df: pd.DataFrame, path: str | Path) -> None:
    write_text_atomic(path, df.to_csv(index=False, float_format="%.10g"))


def load_scores(path: str | Path | list) -> pd.DataFrame:
    """results/scores.csv (or several such files, concatenated, duplicates dropped) as a DataFrame."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    frames = [pd.read_csv(p, dtype={"method": str, "benchmark": str, "experiment": str}) for p in paths]
    df = pd.concat(frames, ignore_index=True).drop_duplicates(subset=ID_COLUMNS, keep="last")
    missing = [c for c in ID_COLUMNS + ["value"] if c not in df.columns]
    if missing:
        raise ValueError(f"{', '.join(map(str, paths))}: not a scores file, missing columns {missing}")
    return df.astype({"seed": int, "k": int, "value": float}).reset_index(drop=True)


_SEED_DIR = re.compile(r"^seed(\d+)$")


def load_metrics(runs_root: str | Path) -> pd.DataFrame:
    """Every run's metrics.jsonl below runs_root as one DataFrame with experiment, method and seed columns.

    runs_root may be runs/ (all experiments) or runs/<experiment>; a run directory is any
    `<method>/seed<s>/` that holds a metrics.jsonl.
    """
    runs_root = Path(runs_root)
    frames = []
    for path in sorted(runs_root.rglob("metrics.jsonl")):
        match = _SEED_DIR.match(path.parent.name)
        if not match:
            continue
        rows = read_jsonl(path)
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        frame.insert(0, "seed", int(match.group(1)))
        frame.insert(0, "method", path.parent.parent.name)
        frame.insert(0, "experiment", path.parent.parent.parent.name)
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"no <method>/seed<s>/metrics.jsonl below {runs_root}")
    return pd.concat(frames, ignore_index=True)
