"""`dynamo report`: results tables from the score files the pipeline wrote.

For every method and benchmark: Pass@1 and Pass@k (k = samples per problem) as the mean over
seeds with a 95% Student-t interval, plus the average over benchmarks (averaged per seed
first, so its interval reflects the seed spread of the average). A method is only called
higher or lower than the baseline when the 95% Welch interval of the difference of average
Pass@1 excludes zero; otherwise the table says "within seed spread".
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
from pathlib import Path

from dynamo.errors import read_json_file
from dynamo.io import write_text_atomic

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (larger df: normal 1.96).
_T975 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]


def t_quantile(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_ci(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval); the half-width is NaN for a single value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def difference_ci(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean difference a - b and the half-width of its 95% Welch interval (conservative df = min(n) - 1)."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return diff, t_quantile(min(len(a), len(b)) - 1) * se


def verdict(diff: float, half_width: float) -> str:
    if math.isnan(half_width):
        return "single seed: no spread"
    if abs(diff) <= half_width:
        return "within seed spread"
    return "higher" if diff > 0 else "lower"


def load_scores(runs_root: Path, methods: list[str], seeds: list[int], benchmarks: list[str]) -> dict:
    """scores[method][bench] = list over seeds of (pass@1, pass@k); k is checked to be the same everywhere."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    ks = set()
    for method in methods:
        out[method] = {}
        for bench in benchmarks:
            rows = []
            for seed in seeds:
                path = runs_root / method / f"seed{seed}" / "eval" / bench / "scores.json"
                if not path.exists():
                    raise FileNotFoundError(f"missing score file {path} (has this run been evaluated?)")
                s = read_json_file(path)
                k = int(s["samples_per_problem"])
                ks.add(k)
                rows.append((float(s["pass_at_1"]), float(s["pass_at_k"][str(k)])))
            out[method][bench] = rows
    if len(ks) != 1:
        raise ValueError(f"score files disagree on samples per problem: {sorted(ks)}")
    return {"scores": out, "k": ks.pop()}


def build_table(
    runs_root: Path, methods: list[str], seeds: list[int], benchmarks: list[str], baseline: str | None
) -> tuple[list[str], list[list], int]:
    loaded = load_scores(runs_root, methods, seeds, benchmarks)
    scores, k = loaded["scores"], loaded["k"]
    header = ["method", "seeds"]
    for bench in [*benchmarks, "avg"]:
        header += [f"{bench}/pass@1", f"{bench}/pass@1_ci95", f"{bench}/pass@{k}", f"{bench}/pass@{k}_ci95"]
    if baseline:
        header += [f"delta_avg_pass@1_vs_{baseline}", f"delta_ci95_vs_{baseline}", f"vs_{baseline}"]

    def seed_averages(method: str, which: int) -> list[float]:
        return [statistics.fmean(scores[method][b][i][which] for b in benchmarks) for i in range(len(seeds))]

    rows = []
    for method in methods:
        row: list = [method, len(seeds)]
        for bench in benchmarks:
            for which in (0, 1):
                row += list(mean_ci([v[which] for v in scores[method][bench]]))
        for which in (0, 1):
            row += list(mean_ci(seed_averages(method, which)))
        if baseline:
            if method == "base":  # the model every run starts from: a reference point, not a contender
                row += [math.nan, math.nan, "start model"]
            elif method == baseline:
                row += [math.nan, math.nan, "baseline"]
            else:
                diff, half = difference_ci(seed_averages(method, 0), seed_averages(baseline, 0))
                row += [diff, half, verdict(diff, half)]
        rows.append(row)
    return header, rows, k


def to_csv(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            [
                "" if isinstance(v, float) and math.isnan(v) else (f"{v:.6f}" if isinstance(v, float) else v)
                for v in row
            ]
        )
    return buf.getvalue()


def to_markdown(
    header: list[str], rows: list[list], benchmarks: list[str], k: int, baseline: str | None, provenance: str
) -> str:
    def cell(mean: float, half: float) -> str:
        return f"{100 * mean:.1f}" + ("" if math.isnan(half) else f" ± {100 * half:.1f}")

    cols = [*benchmarks, "avg"]
    head = ["method"] + [f"{b} P@1 / P@{k}" for b in cols] + ([f"vs {baseline} (avg P@1)"] if baseline else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row[0]]
        for j in range(len(cols)):
            base = 2 + 4 * j
            cells.append(f"{cell(row[base], row[base + 1])} / {cell(row[base + 2], row[base + 3])}")
        if baseline:
            diff, half, word = row[-3], row[-2], row[-1]
            cells.append(word if math.isnan(diff) else f"{100 * diff:+.1f} ± {100 * half:.1f}: {word}")
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\nPercent; mean over {rows[0][1]} seed(s) ± half-width of the 95% t-interval. Pass@{k} uses the "
        f"unbiased estimator with n = {k} samples per problem. 'within seed spread' means the 95% Welch "
        f"interval of the difference in average Pass@1 includes zero: no winner is claimed.\n"
    )
    return "\n".join(lines) + "\n" + note + provenance


def provenance(runs_root: Path, methods: list[str], seeds: list[int]) -> str:
    """Which commits and configs produced the runs in the table."""
    commits = set()
    for method in methods:
        for seed in seeds:
            path = runs_root / method / f"seed{seed}" / "summary.json"
            if path.exists():
                commits.add(read_json_file(path).get("git_commit", "unknown"))
    config = runs_root / "config.yaml"
    return (
        f"\nRuns: `{runs_root}/<method>/seed<seed>`; config: `{config}`; "
        f"code commit(s): {', '.join(sorted(commits)) or 'unknown'}.\n"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-root", required=True, help="runs/<experiment>")
    p.add_argument("--methods", required=True, help="comma-separated, in table order")
    p.add_argument("--seeds", required=True, help="comma-separated")
    p.add_argument("--benchmarks", required=True, help="comma-separated benchmark labels")
    p.add_argument("--baseline", help="method to compare every other method against (e.g. grpo)")
    p.add_argument("--out", required=True, help="output prefix: writes PREFIX.csv and PREFIX.md")


def run(args: argparse.Namespace) -> int:
    runs_root = Path(args.runs_root)
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    benchmarks = args.benchmarks.split(",")
    baseline = args.baseline if args.baseline in methods else None
    header, rows, k = build_table(runs_root, methods, seeds, benchmarks, baseline)
    md = to_markdown(header, rows, benchmarks, k, baseline, provenance(runs_root, methods, seeds))
    write_text_atomic(f"{args.out}.csv", to_csv(header, rows))
    write_text_atomic(f"{args.out}.md", md)
    print(md)
    return 0
